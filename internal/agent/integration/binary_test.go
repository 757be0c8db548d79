package integration

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/gen/process/processconnect"
	"github.com/sbxdev/sbx/internal/agentapi"
)

const token = "integration-token-42"

// lockedBuffer collects the agent's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

// buildAgent builds the agent once, static, as it ships.
func buildAgent(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "sbx-agent-bin")
		if built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "sbx-agent")
		build := exec.Command("go", "build", "-tags", "osusergo,netgo", "-o", built.bin, "github.com/sbxdev/sbx/cmd/sbx-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		built.out, built.err = build.CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("build sbx-agent: %v\n%s", built.err, built.out)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

type tokenTransport struct{ next http.RoundTripper }

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(agentapi.AccessTokenHeader, token)
	return t.next.RoundTrip(r)
}

func TestBinaryAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root: the agent is started in a new PID namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	bin := buildAgent(t)

	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	lnFile, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	cfg := agentapi.Config{AccessToken: token, DefaultUser: "root", SandboxID: "sbx-int",
		EnvVars: map[string]string{"FROM_CONFIG": "yes"}}.Encode()
	var logs lockedBuffer
	cmd := exec.Command(bin)
	cmd.Env = []string{agentapi.ConfigEnv + "=" + string(cfg), "SBX_OTHER_SECRET=hush", "PATH=/usr/bin:/bin"}
	cmd.ExtraFiles = []*os.File{lnFile} // fd 3
	cmd.Stderr = &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lnFile.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	}()
	defer cmd.Process.Kill()

	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr.Protocols = &p
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tokenTransport{tr}}

	res, err := hc.Get("http://agent" + agentapi.HealthPath)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("/health: %s", res.Status)
	}

	c := processconnect.NewProcessClient(hc, "http://agent")
	run := func(script string) (string, *pb.ProcessEvent_EndEvent) {
		t.Helper()
		s, err := c.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}}}))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out strings.Builder
		for s.Receive() {
			ev := s.Msg().GetEvent()
			out.Write(ev.GetData().GetStdout())
			out.Write(ev.GetData().GetStderr())
			if end := ev.GetEnd(); end != nil {
				return out.String(), end
			}
		}
		t.Fatalf("%s: no end event: %v", script, s.Err())
		return "", nil
	}

	// The agent is PID 1 of the namespace and the parent of what it runs.
	if out, _ := run("echo $PPID"); out != "1\n" {
		t.Errorf("parent pid %q, want 1", out)
	}
	// Neither the token nor any SBX_ variable reaches processes.
	out, _ := run("env")
	if strings.Contains(out, "SBX_") || strings.Contains(out, token) || strings.Contains(out, "hush") {
		t.Errorf("process environment leaks agent configuration:\n%s", out)
	}
	if !strings.Contains(out, "FROM_CONFIG=yes") || !strings.Contains(out, "E2B_SANDBOX_ID=sbx-int") {
		t.Errorf("process environment lacks configured variables:\n%s", out)
	}
	// The listener on fd 3 is not inherited.
	if out, _ := run("readlink /proc/self/fd/3 || true"); strings.Contains(out, "socket:") {
		t.Errorf("fd 3 leaked into a process: %s", out)
	}

	// SIGTERM stops processes (those that ignore it are killed) and exits 0.
	s, err := c.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", "trap '' TERM; echo ready; while :; do sleep 1; done"}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for s.Receive() && !strings.Contains(string(s.Msg().GetEvent().GetData().GetStdout()), "ready") {
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var end *pb.ProcessEvent_EndEvent
	for s.Receive() {
		if e := s.Msg().GetEvent().GetEnd(); e != nil {
			end = e
		}
	}
	if end == nil || end.GetStatus() != "signal: killed" {
		t.Errorf("end of a process ignoring SIGTERM: %v (%v), want signal: killed", end, s.Err())
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exit: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("agent did not exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), "agent stopped") {
		t.Errorf("no clean stop in the log")
	}
}

// TestBinaryRefusesWithoutToken checks that the agent fails closed.
func TestBinaryRefusesWithoutToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildAgent(t), "-listen", "unix:"+filepath.Join(t.TempDir(), "s.sock"))
	cmd.Env = []string{`SBX_AGENT_CONFIG={"accessToken":""}`}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("agent without token: %v, want exit 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "accessToken is required") {
		t.Errorf("log does not say why:\n%s", out)
	}
}
