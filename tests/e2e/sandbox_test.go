// Package e2e drives a real sbx serve with real sandboxes through the Go SDK
// and the CLI.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustRun(t *testing.T, ctx context.Context, sb *client.Sandbox, cmd string, opts *client.RunOptions) *client.Result {
	t.Helper()
	res, err := sb.Run(ctx, cmd, opts)
	if err != nil {
		t.Fatalf("run %q: %v", cmd, err)
	}
	return res
}

func TestSandboxLifecycle(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 2*time.Minute)
	c := srv.Client

	sb, err := c.CreateSandbox(ctx, client.CreateOptions{
		Template: "base",
		Timeout:  5 * time.Minute,
		Metadata: map[string]string{"suite": "lifecycle", "n": "1"},
		Env:      map[string]string{"GREETING": "hello from env"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sb.ID) != 20 || sb.EnvdAccessToken == "" {
		t.Fatalf("unexpected sandbox: %+v", sb)
	}

	t.Run("output and exit codes", func(t *testing.T) {
		res := mustRun(t, ctx, sb, "echo out; echo err >&2; exit 7", nil)
		if res.Stdout != "out\n" || res.Stderr != "err\n" || res.ExitCode != 7 {
			t.Fatalf("got %+v", res)
		}
	})
	t.Run("env, cwd and users", func(t *testing.T) {
		res := mustRun(t, ctx, sb, `echo "$GREETING|$E2B_SANDBOX_ID|$EXTRA|$(pwd)|$(whoami)|$HOME"`, &client.RunOptions{Env: map[string]string{"EXTRA": "x"}})
		want := "hello from env|" + sb.ID + "|x|/home/user|user|/home/user\n"
		if res.Stdout != want {
			t.Fatalf("got %q, want %q", res.Stdout, want)
		}
		res = mustRun(t, ctx, sb, `id -u; pwd`, &client.RunOptions{User: "root", Cwd: "/tmp"})
		if res.Stdout != "0\n/tmp\n" {
			t.Fatalf("root run: %q", res.Stdout)
		}
	})
	t.Run("template tools", func(t *testing.T) {
		res := mustRun(t, ctx, sb, `python3 -c 'print(6*7)' && node -e 'console.log(6*7)' && npm --version >/dev/null && git --version >/dev/null && curl --version >/dev/null && echo ok`, nil)
		if res.Stdout != "42\n42\nok\n" {
			t.Fatalf("got %+v", res)
		}
	})
	t.Run("files persist within the sandbox", func(t *testing.T) {
		mustRun(t, ctx, sb, `echo data > /home/user/f.txt`, nil)
		if res := mustRun(t, ctx, sb, `cat /home/user/f.txt`, nil); res.Stdout != "data\n" {
			t.Fatalf("got %q", res.Stdout)
		}
	})
	t.Run("get and list", func(t *testing.T) {
		info, err := c.GetSandbox(ctx, sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.State != client.StateRunning || info.TemplateID != "base" || info.Metadata["suite"] != "lifecycle" || info.Runtime != harness.Runtime() {
			t.Fatalf("info: %+v", info)
		}
		if d := time.Until(info.EndAt); d < 4*time.Minute || d > 5*time.Minute+5*time.Second {
			t.Fatalf("endAt %v is not about 5 minutes away", info.EndAt)
		}
		other, err := c.CreateSandbox(ctx, client.CreateOptions{Metadata: map[string]string{"suite": "other"}})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Kill(ctx)
		list, err := c.ListSandboxes(ctx, &client.ListOptions{Metadata: map[string]string{"suite": "lifecycle"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].SandboxID != sb.ID {
			t.Fatalf("filtered list: %+v", list)
		}
		all, err := c.ListSandboxes(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 {
			t.Fatalf("want 2 sandboxes, got %d", len(all))
		}
	})
	t.Run("timeout can be removed and set", func(t *testing.T) {
		if err := sb.SetTimeout(ctx, client.NoTimeout); err != nil {
			t.Fatal(err)
		}
		info, err := sb.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.HasTimeout() {
			t.Fatalf("timeout not removed: %v", info.EndAt)
		}
		if err := sb.SetTimeout(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		info, _ = sb.Info(ctx)
		if d := time.Until(info.EndAt); d < 59*time.Minute {
			t.Fatalf("endAt %v", info.EndAt)
		}
	})
	t.Run("kill", func(t *testing.T) {
		dir := filepath.Join(srv.DataDir, "sandboxes", sb.ID)
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("sandbox dir missing while running: %v", err)
		}
		if err := sb.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetSandbox(ctx, sb.ID); !client.IsNotFound(err) {
			t.Fatalf("get after kill: %v", err)
		}
		if _, err := sb.Run(ctx, "true", nil); err == nil {
			t.Fatal("run on a killed sandbox succeeded")
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("sandbox dir left after kill: %v", err)
		}
		if err := sb.Kill(ctx); !client.IsNotFound(err) {
			t.Fatalf("second kill: %v", err)
		}
	})
}

func TestTimeoutKillsSandbox(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := srv.Client.GetSandbox(ctx, sb.ID)
		if client.IsNotFound(err) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("sandbox outlived its timeout")
		case <-time.After(100 * time.Millisecond): // polling the API: no event to wait on
		}
	}
}

func TestProcesses(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 2*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("background with tag, connect, list, kill", func(t *testing.T) {
		p, err := sb.Start(ctx, client.ExecOptions{Cmd: "/bin/sh", Args: []string{"-c", "read x; echo got $x; sleep 1000"}, Tag: "worker", KeepStdin: true})
		if err != nil {
			t.Fatal(err)
		}
		out := newWatcher()
		conn, err := sb.ConnectProcess(ctx, client.ConnectProcessOptions{Tag: "worker", Stdout: out})
		if err != nil {
			t.Fatal(err)
		}
		if conn.PID != p.PID {
			t.Fatalf("connected to pid %d, started %d", conn.PID, p.PID)
		}
		if err := p.SendInput(ctx, []byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		out.await(t, "got ping")
		procs, err := sb.ListProcesses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, pi := range procs {
			if pi.PID == p.PID && pi.Tag == "worker" {
				found = true
			}
		}
		if !found {
			t.Fatalf("process %d not listed: %+v", p.PID, procs)
		}
		if err := p.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := p.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Exited || !strings.Contains(st.Status, "killed") {
			t.Fatalf("status after kill: %+v", st)
		}
		if _, err := sb.ConnectProcess(ctx, client.ConnectProcessOptions{Tag: "worker"}); !client.IsNotFound(err) {
			t.Fatalf("connect to a dead process: %v", err)
		}
	})
	t.Run("stdin to completion", func(t *testing.T) {
		var out bytes.Buffer
		code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "wc", Args: []string{"-c"}, Stdin: strings.NewReader(strings.Repeat("x", 100000)), Stdout: &out})
		if err != nil || code != 0 || strings.TrimSpace(out.String()) != "100000" {
			t.Fatalf("wc: code %d err %v out %q", code, err, out.String())
		}
	})
	t.Run("pty", func(t *testing.T) {
		out := newWatcher()
		p, err := sb.Start(ctx, client.ExecOptions{Cmd: "/bin/bash", Args: []string{"-l"}, PTY: &client.PTYSize{Cols: 80, Rows: 24}, Stdout: out})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.SendInput(ctx, []byte("tty; echo pty-$((6*7))\n")); err != nil {
			t.Fatal(err)
		}
		out.await(t, "pty-42")
		out.await(t, "/dev/pts/")
		if err := p.Resize(ctx, client.PTYSize{Cols: 100, Rows: 30}); err != nil {
			t.Fatal(err)
		}
		if err := p.SendInput(ctx, []byte("stty size; exit 3\n")); err != nil {
			t.Fatal(err)
		}
		out.await(t, "30 100")
		st, err := p.Wait(ctx)
		if err != nil || st.ExitCode != 3 {
			t.Fatalf("pty exit: %+v %v", st, err)
		}
	})
	t.Run("command not found", func(t *testing.T) {
		_, err := sb.Exec(ctx, client.ExecOptions{Cmd: "/no/such/program"})
		if !client.IsNotFound(err) {
			t.Fatalf("want not found, got %v", err)
		}
		res := mustRun(t, ctx, sb, "no-such-command", nil)
		if res.ExitCode != 127 || !strings.Contains(res.Stderr, "not found") {
			t.Fatalf("shell: %+v", res)
		}
	})
}

// TestRestartSurvival stops sbx serve, checks that sandboxes, their
// processes and files survive it, and that one that died meanwhile is
// reported failed.
func TestRestartSurvival(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	keep, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: client.NoTimeout})
	if err != nil {
		t.Fatal(err)
	}
	doomed, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: client.NoTimeout})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, keep, "echo kept > /home/user/state", nil)
	p, err := keep.Start(ctx, client.ExecOptions{Cmd: "sleep", Args: []string{"1000"}, Tag: "sleeper"})
	if err != nil {
		t.Fatal(err)
	}
	p.Disconnect()

	srv.Stop()
	// While the server is down, the box of one sandbox dies: its init
	// (the agent) is killed through the runtime, behind sbx's back.
	rt := harness.Runtime()
	// The box's host process (runc: the init; runsc: the sandbox process,
	// which exits once its init is gone).
	var st struct {
		Pid int `json:"pid"`
	}
	if out, err := exec.Command("/usr/local/lib/sbx/"+rt, "--root", filepath.Join(srv.DataDir, rt), "state", doomed.ID).Output(); err != nil || json.Unmarshal(out, &st) != nil || st.Pid <= 0 {
		t.Fatalf("%s state: %v %s", rt, err, out)
	}
	kill := exec.Command("/usr/local/lib/sbx/"+rt, "--root", filepath.Join(srv.DataDir, rt), "kill", doomed.ID, "KILL")
	if out, err := kill.CombinedOutput(); err != nil {
		t.Fatalf("%s kill: %v %s", rt, err, out)
	}
	// The box dies asynchronously (gVisor's sandbox process takes a moment
	// to go, and runsc reports it running until it has); nothing signals
	// that to another process, so poll until the host process is gone.
	for deadline := time.Now().Add(20 * time.Second); ; {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", st.Pid))
		if err != nil || bytes.Contains(b, []byte(") Z ")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed box's process %d is still there: %s", st.Pid, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.StartAgain()

	if res := mustRun(t, ctx, keep, "cat /home/user/state", nil); res.Stdout != "kept\n" {
		t.Fatalf("file after restart: %q", res.Stdout)
	}
	procs, err := keep.ListProcesses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	alive := false
	for _, pi := range procs {
		alive = alive || (pi.PID == p.PID && pi.Tag == "sleeper")
	}
	if !alive {
		t.Fatalf("background process did not survive the restart: %+v", procs)
	}
	info, err := c.GetSandbox(ctx, doomed.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != "failed" {
		t.Log(srv.Logs())
		t.Fatalf("dead sandbox state %q, want failed", info.State)
	}
	list, err := c.ListSandboxes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].SandboxID != keep.ID {
		t.Fatalf("list after restart: %+v", list)
	}
	if err := c.KillSandbox(ctx, doomed.ID); err != nil {
		t.Fatalf("kill failed sandbox: %v", err)
	}
}

// watcher is an io.Writer that lets a test wait for text to appear.
type watcher struct {
	ch  chan []byte
	buf []byte
}

func newWatcher() *watcher { return &watcher{ch: make(chan []byte, 1024)} }

func (w *watcher) Write(p []byte) (int, error) {
	w.ch <- append([]byte(nil), p...)
	return len(p), nil
}

// awaitAsking waits for s like await, calling ask again whenever a second
// passes without it: for output that answers a question asked too early,
// such as a size read before an asynchronous resize has landed.
func (w *watcher) awaitAsking(t *testing.T, s string, ask func()) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	ask()
	for !bytes.Contains(w.buf, []byte(s)) {
		select {
		case p := <-w.ch:
			w.buf = append(w.buf, p...)
		case <-time.After(time.Second):
			ask()
		case <-deadline:
			t.Fatalf("%q never appeared; output so far: %q", s, w.buf)
		}
	}
}

func (w *watcher) await(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !bytes.Contains(w.buf, []byte(s)) {
		select {
		case p := <-w.ch:
			w.buf = append(w.buf, p...)
		case <-deadline:
			t.Fatalf("%q never appeared; output so far: %q", s, w.buf)
		}
	}
}
