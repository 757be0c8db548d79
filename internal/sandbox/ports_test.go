package sandbox

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/tunnel"
)

// pidRuntime reports boxes running as the pids it is given, one per State
// call (the last repeats), on the host kernel's network stack.
type pidRuntime struct {
	noRuntime
	pids []int
}

func (r *pidRuntime) HostNetworkStack() bool { return true }
func (r *pidRuntime) State(context.Context, string) (BoxState, error) {
	pid := r.pids[0]
	if len(r.pids) > 1 {
		r.pids = r.pids[1:]
	}
	return BoxState{Exists: true, Running: true, Pid: pid}, nil
}

func portDialerFor(t *testing.T, pids ...int) (*PortDialer, error) {
	t.Helper()
	rt := &pidRuntime{noRuntime: noRuntime{t}, pids: pids}
	sb := &store.Sandbox{ID: "cportdialer000000001", Template: "base", State: StateRunning, Runtime: "runc"}
	m := newTestManager(t, Config{Runtimes: map[string]Runtime{"runc": rt}}, sb)
	return m.DataPlane().PortDialer(context.Background(), sb)
}

// TestPortDialer enters a real network namespace (made with unshare, as a
// box's is) and checks that it reaches a server on that namespace's
// loopback, and never one on the host's.
func TestPortDialer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (it makes a network namespace)")
	}
	// A server in a namespace of its own: it prints its port, then
	// answers each connection with "inside".
	cmd := exec.Command("unshare", "--net", "sh", "-c", `ip link set lo up && exec python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"inside"); c.close()
'`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("server in the namespace: %v", err)
	}
	port, _ := strconv.Atoi(strings.TrimSpace(line))

	// The same port on the host's loopback, which must stay out of reach.
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("host"))
			c.Close()
		}
	}()
	hostPort := host.Addr().(*net.TCPAddr).Port

	d, err := portDialerFor(t, cmd.Process.Pid)
	if err != nil || d == nil {
		t.Fatalf("PortDialer = %v, %v", d, err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialPort(ctx, port)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "inside" {
		t.Fatalf("read %q, want inside", got)
	}
	if hostPort != port {
		_, err = d.DialPort(ctx, hostPort)
		var te *tunnel.Error
		if !errors.As(err, &te) || te.StatusCode != http.StatusBadGateway || !strings.Contains(te.Message, "nothing is listening") {
			t.Fatalf("dial the host's port %d from the namespace: %v, want nothing listening", hostPort, err)
		}
	}
}

// TestPortDialerRefuses checks the guards: never the server's own network
// namespace (self), not a pid that stopped being the box's meanwhile (pid),
// and no dialer at all for runtimes with a network stack of their own
// (netstack).
func TestPortDialerRefuses(t *testing.T) {
	t.Run("self", func(t *testing.T) {
		if _, err := portDialerFor(t, os.Getpid()); err == nil || !strings.Contains(err.Error(), "server's network namespace") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("pid", func(t *testing.T) {
		if _, err := portDialerFor(t, os.Getpid(), 1); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("netstack", func(t *testing.T) {
		sb := &store.Sandbox{ID: "cportdialer000000002", Template: "base", State: StateRunning, Runtime: "runc"}
		m := newTestManager(t, Config{}, sb) // noRuntime: no HostNetworkStack
		if d, err := m.DataPlane().PortDialer(context.Background(), sb); d != nil || err != nil {
			t.Fatalf("PortDialer = %v, %v; want none", d, err)
		}
	})
}
