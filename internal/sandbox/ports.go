package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/tunnel"
)

// EnsureRunning returns sandbox id, running, for the data plane (package
// proxy, through internal/server), which calls it before it forwards
// traffic to a sandbox it holds no connections to. A sandbox that is not
// running is an error wrapping errdefs.ErrFailedPrecondition (unknown or
// killed: errdefs.ErrNotFound), which the proxy answers as a gone sandbox.
//
// This is the hook for resuming a paused sandbox when traffic arrives for
// it: a resume belongs here, and whatever pauses a sandbox must make the
// proxy drop its connections (Hooks.Gone and Hooks.Pausing) so the next
// request comes back through this method.
//
// A paused sandbox whose lifecycle allows it (autoResume, idlePause) is
// resumed here; see wake.
func (d DataPlane) EnsureRunning(ctx context.Context, id string) (*Sandbox, error) {
	return d.m.wake(ctx, id)
}

// trafficToken returns a new traffic access token for a sandbox with private
// ports, and "" (public ports) otherwise.
func trafficToken(private bool) string {
	if !private {
		return ""
	}
	return newToken()
}

// hostNetworkStack is implemented by runtimes whose boxes' network
// namespaces are served by the host kernel (runc): a socket opened in such a
// namespace talks to the box's own loopback, so the Manager can reach a
// box's ports without its agent. Runtimes with a network stack of their own
// (gVisor's netstack) do not implement it; their ports are reached through
// the agent's tunnel.
type hostNetworkStack interface {
	HostNetworkStack() bool
}

// PortDialer connects to TCP ports on one sandbox's loopback from the host,
// by entering the sandbox's network namespace for the socket it opens. It
// holds the namespace open, so it keeps reaching that namespace (and no
// other) even if the sandbox's processes die; Close releases it. It is safe
// for concurrent use.
type PortDialer struct {
	ns *os.File
}

// PortDialer returns a dialer for sandbox id's ports, or nil (and no error)
// when its runtime does not run it on the host kernel's network stack, in
// which case only its agent's tunnel reaches its ports.
func (d DataPlane) PortDialer(ctx context.Context, sb *Sandbox) (*PortDialer, error) {
	m := d.m
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return nil, err
	}
	if hs, ok := rt.(hostNetworkStack); !ok || !hs.HostNetworkStack() {
		return nil, nil
	}
	if ns := m.initNetns(sb.ID); ns != nil {
		return checkedPortDialer(sb.ID, ns)
	}
	unlock := m.lock(sb.ID) // runtimes take one call per box at a time
	defer unlock()
	st, err := rt.State(ctx, sb.ID)
	if err != nil {
		return nil, fmt.Errorf("port dialer for %s: %w", sb.ID, err)
	}
	if !st.Running || st.Pid <= 0 {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is not running", sb.ID)
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", st.Pid))
	if err != nil {
		return nil, fmt.Errorf("port dialer for %s: %w", sb.ID, err)
	}
	// Threat: the box's init may have died and its pid gone to another
	// process (a host daemon, another sandbox) between State and Open;
	// entering that process's namespace would hand this sandbox's traffic
	// to someone else's loopback. With the namespace now held open, check
	// the pid still is the box's init.
	if st2, err := rt.State(ctx, sb.ID); err != nil || !st2.Running || st2.Pid != st.Pid {
		ns.Close()
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q stopped while its ports were being opened", sb.ID)
	}
	return checkedPortDialer(sb.ID, ns)
}

// initNetns opens the network namespace of box id's init, found by the pid
// file its runtime wrote (initPid, checked by openInit), without the two
// runtime state calls (two runc processes, on a sandbox's first request to
// a port) of the general path. nil when there is no such process.
func (m *Manager) initNetns(id string) *os.File {
	pid, pidfd := m.openInit(id, m.initPid(id))
	if pidfd == nil {
		return nil
	}
	defer pidfd.Close()
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil
	}
	// Threat: the init may have exited and its pid gone to another
	// process (a host daemon, another sandbox) before the Open. The pidfd
	// holds the init's pid while it lives: if the init still lives now,
	// the namespace opened is its own.
	if err := unix.PidfdSendSignal(int(pidfd.Fd()), 0, nil, 0); err != nil {
		ns.Close()
		return nil
	}
	return ns
}

// checkedPortDialer is a dialer into ns, the network namespace opened for
// sandbox id, unless it is the server's own. It closes ns when it fails.
func checkedPortDialer(id string, ns *os.File) (*PortDialer, error) {
	// Never the server's own namespace, whatever happened: requests for
	// sandbox ports must not reach the host's loopback services.
	var box, self unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &box); err != nil {
		ns.Close()
		return nil, fmt.Errorf("port dialer for %s: %w", id, err)
	}
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil || (box.Ino == self.Ino && box.Dev == self.Dev) {
		ns.Close()
		return nil, fmt.Errorf("port dialer for %s: the box shares the server's network namespace", id)
	}
	return &PortDialer{ns: ns}, nil
}

// DialPort connects to port on the sandbox's loopback, 127.0.0.1 and then
// [::1], as the agent's tunnel does. Nothing listening is a *tunnel.Error
// with status 502, the agent's own answer.
func (d *PortDialer) DialPort(ctx context.Context, port int) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread enters the sandbox's namespace and never leaves it:
		// returning with the thread still locked makes the runtime end
		// the thread, so no other goroutine ever runs in the sandbox's
		// namespace.
		runtime.LockOSThread()
		var err error
		// Control holds the file open for the call, so a concurrent Close
		// cannot let its descriptor number be reused for another
		// namespace under us.
		rc, cerr := d.ns.SyscallConn()
		if cerr == nil {
			cerr = rc.Control(func(fd uintptr) { err = unix.Setns(int(fd), unix.CLONE_NEWNET) })
		}
		if cerr != nil || err != nil {
			ch <- result{nil, fmt.Errorf("enter the sandbox's network namespace: %w", errors.Join(cerr, err))}
			return
		}
		var dl net.Dialer
		c, err := dl.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil && ctx.Err() == nil {
			var err6 error
			if c, err6 = dl.DialContext(ctx, "tcp", net.JoinHostPort("::1", strconv.Itoa(port))); err6 == nil {
				err = nil
			}
		}
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(r.err, syscall.ECONNREFUSED) || errors.Is(r.err, syscall.EADDRNOTAVAIL) || errors.Is(r.err, syscall.ENETUNREACH) {
			return nil, &tunnel.Error{Port: port, StatusCode: http.StatusBadGateway, Message: fmt.Sprintf("nothing is listening on port %d in the sandbox", port)}
		}
		return nil, fmt.Errorf("dial port %d in the sandbox: %w", port, r.err)
	}
	return r.c, nil
}

// Close releases the sandbox's network namespace.
func (d *PortDialer) Close() error { return d.ns.Close() }
