package client_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
)

// TestLive runs the SDK against a real `sbx serve` when SBX_TEST_URL and
// SBX_TEST_API_KEY name one (on loopback); it is skipped otherwise. The
// end-to-end suites in tests/ cover the same ground with their own harness.
func TestLive(t *testing.T) {
	url, key := os.Getenv("SBX_TEST_URL"), os.Getenv("SBX_TEST_API_KEY")
	if url == "" || key == "" {
		t.Skip("SBX_TEST_URL and SBX_TEST_API_KEY not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := client.New(url, key)
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 2 * time.Minute, Metadata: map[string]string{"test": "live"}, Env: map[string]string{"FROM_CREATE": "yes"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Kill(context.WithoutCancel(ctx))

	res, err := sb.Run(ctx, "echo $FROM_CREATE; echo err >&2; whoami; exit 3", nil)
	if err != nil || res.ExitCode != 3 || res.Stdout != "yes\nuser\n" || res.Stderr != "err\n" || res.Err() == nil {
		t.Errorf("run = %+v, %v", res, err)
	}
	res, err = sb.Run(ctx, "whoami; pwd", &client.RunOptions{User: "root", Cwd: "/tmp"})
	if err != nil || res.Stdout != "root\n/tmp\n" {
		t.Errorf("run as root = %+v, %v", res, err)
	}
	res, err = sb.Run(ctx, "tr a-z A-Z", &client.RunOptions{Stdin: strings.NewReader("shout")})
	if err != nil || res.Stdout != "SHOUT" {
		t.Errorf("run with stdin = %+v, %v", res, err)
	}

	var out lockedBuffer
	p, err := sb.Start(ctx, client.ExecOptions{Cmd: "cat", KeepStdin: true, Tag: "live-cat", Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	procs, err := sb.ListProcesses(ctx)
	found := false
	for _, pi := range procs {
		found = found || (pi.PID == p.PID && pi.Tag == "live-cat")
	}
	if err != nil || !found {
		t.Errorf("list = %+v, %v", procs, err)
	}
	var out2 lockedBuffer
	p2, err := sb.ConnectProcess(ctx, client.ConnectProcessOptions{Tag: "live-cat", Stdout: &out2})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SendInput(ctx, []byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "echo on both streams", func() bool { return out.String() == "ping\n" && out2.String() == "ping\n" })
	if err := p.CloseStdin(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(ctx); err != nil || st.ExitCode != 0 {
		t.Errorf("cat wait = %+v, %v", st, err)
	}
	_, _ = p2.Wait(ctx)

	sleeper, err := sb.Start(ctx, client.ExecOptions{Cmd: "sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sleeper.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := sleeper.Wait(ctx); err != nil || st.Exited || st.ExitCode != -1 {
		t.Errorf("killed wait = %+v, %v", st, err)
	}

	var tty lockedBuffer
	sh, err := sb.Start(ctx, client.ExecOptions{Cmd: "/bin/bash", Args: []string{"-i", "-l"}, PTY: &client.PTYSize{Cols: 90, Rows: 20}, Stdout: &tty})
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Resize(ctx, client.PTYSize{Cols: 101, Rows: 33}); err != nil {
		t.Fatal(err)
	}
	if err := sh.SendInput(ctx, []byte("stty size; exit 5\n")); err != nil {
		t.Fatal(err)
	}
	st, err := sh.Wait(ctx)
	if err != nil || st.ExitCode != 5 || !strings.Contains(tty.String(), "33 101") {
		t.Errorf("pty = %+v, %v, %q", st, err, tty.String())
	}

	var stream bytes.Buffer
	code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "/bin/sh", Args: []string{"-c", "for i in 1 2 3; do echo $i; done"}, Stdout: &stream})
	if err != nil || code != 0 || stream.String() != "1\n2\n3\n" {
		t.Errorf("exec = %d, %v, %q", code, err, stream.String())
	}

	list, err := c.ListSandboxes(ctx, &client.ListOptions{Metadata: map[string]string{"test": "live"}})
	if err != nil || len(list) != 1 || list[0].SandboxID != sb.ID || !list[0].HasTimeout() {
		t.Errorf("list = %+v, %v", list, err)
	}
	if err := sb.SetTimeout(ctx, client.NoTimeout); err != nil {
		t.Fatal(err)
	}
	if info, err := sb.Info(ctx); err != nil || info.HasTimeout() {
		t.Errorf("info after NoTimeout = %+v, %v", info, err)
	}
	again, err := c.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil || again.EnvdAccessToken == "" {
		t.Errorf("connect = %+v, %v", again, err)
	}
	if err := sb.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSandbox(ctx, sb.ID); !client.IsNotFound(err) {
		t.Errorf("get after kill: %v", err)
	}
	if err := c.KillSandbox(ctx, sb.ID); !client.IsNotFound(err) {
		t.Errorf("kill twice: %v", err)
	}
}
