package client_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

func newSandbox(t *testing.T) (*client.Sandbox, *client.Client) {
	t.Helper()
	c := harness.Start(t).Client
	sb, err := c.CreateSandbox(context.Background(), client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sb, c
}

func TestRun(t *testing.T) {
	sb, _ := newSandbox(t)
	ctx := context.Background()
	res, err := sb.Run(ctx, "echo out; echo err >&2; echo $FOO; exit 3", &client.RunOptions{Env: map[string]string{"FOO": "bar"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Stdout != "out\nbar\n" || res.Stderr != "err\n" {
		t.Errorf("result = %+v", res)
	}
	var exitErr *client.ExitError
	if !errors.As(res.Err(), &exitErr) || exitErr.Result.ExitCode != 3 {
		t.Errorf("Err() = %v", res.Err())
	}
	ok, err := sb.Run(ctx, "cat", &client.RunOptions{Stdin: strings.NewReader("piped")})
	if err != nil || ok.Stdout != "piped" || ok.Err() != nil {
		t.Errorf("stdin run = %+v, %v", ok, err)
	}
	if _, err := sb.Run(ctx, "sleep 10", &client.RunOptions{Timeout: 200 * time.Millisecond}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timed-out run: %v", err)
	}
}

// lockedBuffer lets the test read output while the process writes it.
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitUntil polls cond for a few seconds and reports whether it held.
func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestExecStreamsAndUser(t *testing.T) {
	sb, _ := newSandbox(t)
	ctx := context.Background()
	var out, errb bytes.Buffer
	code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "sh", Args: []string{"-c", "pwd; echo e >&2; exit 7"}, Cwd: "/", User: "root", Stdout: &out, Stderr: &errb})
	if err != nil || code != 7 || out.String() != "/\n" || errb.String() != "e\n" {
		t.Errorf("exec = %d, %v, %q, %q", code, err, out.String(), errb.String())
	}
}

func TestStartInputSignalConnect(t *testing.T) {
	sb, _ := newSandbox(t)
	ctx := context.Background()
	var out lockedBuffer
	p, err := sb.Start(ctx, client.ExecOptions{Cmd: "cat", KeepStdin: true, Tag: "cat1", Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if p.PID == 0 {
		t.Fatal("no PID")
	}
	if err := p.SendInput(ctx, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "echoed input", func() bool { return out.String() == "hello\n" })

	procs, err := sb.ListProcesses(ctx)
	if err != nil || len(procs) != 1 || procs[0].PID != p.PID || procs[0].Tag != "cat1" || procs[0].Cmd != "cat" {
		t.Fatalf("list = %+v, %v", procs, err)
	}
	var out2 lockedBuffer
	p2, err := sb.ConnectProcess(ctx, client.ConnectProcessOptions{Tag: "cat1", Stdout: &out2})
	if err != nil || p2.PID != p.PID {
		t.Fatalf("connect = %+v, %v", p2, err)
	}
	if err := p.SendInput(ctx, []byte("again\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "output on both streams", func() bool { return out2.String() == "again\n" && out.String() == "hello\nagain\n" })
	if err := p.CloseStdin(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait(ctx)
	if err != nil || st.ExitCode != 0 || !st.Exited {
		t.Errorf("wait = %+v, %v", st, err)
	}
	if st2, err := p2.Wait(ctx); err != nil || st2 != st {
		t.Errorf("connected wait = %+v, %v", st2, err)
	}

	long, err := sb.Start(ctx, client.ExecOptions{Cmd: "sleep", Args: []string{"30"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := long.Signal(ctx, client.SIGTERM); err != nil {
		t.Fatal(err)
	}
	st, err = long.Wait(ctx)
	if err != nil || st.Exited || st.ExitCode != -1 || st.Status != "signal: terminated" {
		t.Errorf("signalled wait = %+v, %v", st, err)
	}
	if err := long.Kill(ctx); !client.IsNotFound(err) {
		t.Errorf("kill ended process: %v", err)
	}
	if _, err := sb.ConnectProcess(ctx, client.ConnectProcessOptions{PID: 1}); !client.IsNotFound(err) {
		t.Errorf("connect unknown process: %v", err)
	}
}

func TestPTY(t *testing.T) {
	sb, _ := newSandbox(t)
	ctx := context.Background()
	var out lockedBuffer
	p, err := sb.Start(ctx, client.ExecOptions{Cmd: "sh", Args: []string{"-c", "echo $TERM; cat"}, PTY: &client.PTYSize{Cols: 80, Rows: 24}, Stdin: strings.NewReader("typed\n"), Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	// A terminal echoes the input and ends lines with CRLF; the input may
	// come before or after the echo of $TERM.
	if !waitUntil(func() bool {
		o := out.String()
		return strings.Contains(o, "xterm-256color\r\n") && strings.Count(o, "typed\r\n") == 2
	}) {
		t.Fatalf("pty output %q", out.String())
	}
	if err := p.Resize(ctx, client.PTYSize{Cols: 100, Rows: 30}); err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(ctx); err != nil || st.Exited {
		t.Errorf("wait = %+v, %v", st, err)
	}
}

func TestDataPlaneErrors(t *testing.T) {
	sb, c := newSandbox(t)
	ctx := context.Background()
	if err := c.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Run(ctx, "true", nil); err == nil {
		t.Error("run in killed sandbox: no error")
	}
	sb2, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sb2.EnvdAccessToken = "wrong"
	if _, err := sb2.Run(ctx, "true", nil); !client.IsUnauthenticated(err) {
		t.Errorf("wrong token: %v", err)
	}
}
