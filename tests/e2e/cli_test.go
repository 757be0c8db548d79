package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestCLI runs the built sbx binary against a real server: the output,
// --json and exit codes of each client subcommand, with real sandboxes.
func TestCLI(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 4*time.Minute)

	// One sandbox, made by the CLI, serves the subtests that do not end it.
	out, stderr, code := srv.CLI(ctx, nil, "create", "--json", "--meta", "k=v", "--env", "A=B", "--timeout", "10m")
	if code != 0 {
		t.Fatalf("sbx create: exit %d\n%s", code, stderr)
	}
	created := time.Now()
	var sb client.Sandbox
	decodeStrict(t, out, &sb)
	id := sb.ID

	t.Run("create and ls", func(t *testing.T) {
		if !regexp.MustCompile(`^[a-z0-9]{20}$`).MatchString(id) || sb.TemplateID != "base" || sb.EnvdAccessToken == "" || sb.Runtime != harness.Runtime() {
			t.Fatalf("sbx create --json: %s", out)
		}
		info := lsJSON(t, ctx, srv, id)
		if info == nil {
			t.Fatalf("sbx ls --json does not list %s", id)
		}
		if info.Metadata["k"] != "v" || info.TemplateID != "base" || info.State != client.StateRunning || info.Runtime != harness.Runtime() {
			t.Fatalf("sbx ls --json: %+v", info)
		}
		if d := info.EndAt.Sub(created); d < 9*time.Minute || d > 10*time.Minute+5*time.Second {
			t.Fatalf("endAt %v is not 10 minutes after creation (%v)", info.EndAt, created)
		}

		table := cliOK(t, ctx, srv, "ls", "--meta", "k=v")
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != 2 || !slices.Equal(strings.Fields(lines[0]), []string{"ID", "TEMPLATE", "RUNTIME", "STATE", "STARTED", "ENDS"}) {
			t.Fatalf("sbx ls --meta k=v:\n%s", table)
		}
		if f := strings.Fields(lines[1]); len(f) != 8 || f[0] != id || f[1] != "base" || f[2] != harness.Runtime() || f[3] != "running" || f[6] != "in" || f[7] != "10m" {
			t.Fatalf("sbx ls row %q, want %s base %s running … in 10m", lines[1], id, harness.Runtime())
		}
		if table := cliOK(t, ctx, srv, "ls", "--meta", "k=nope"); strings.Contains(table, id) || !strings.HasPrefix(table, "ID ") {
			t.Fatalf("sbx ls --meta k=nope:\n%s", table)
		}
	})

	t.Run("exec", func(t *testing.T) {
		tests := []struct {
			name   string
			stdin  string
			args   []string
			stdout string
			stderr string // a substring
			code   int
		}{
			{"streams and exit code", "", []string{"exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 5"}, "out\n", "err", 5},
			{"env from create", "", []string{"exec", id, "--", "printenv", "A"}, "B\n", "", 0},
			{"env flag", "", []string{"exec", "--env", "X=y z", id, "--", "printenv", "X"}, "y z\n", "", 0},
			{"default user", "", []string{"exec", id, "--", "sh", "-c", "id -un; pwd"}, "user\n/home/user\n", "", 0},
			{"root", "", []string{"exec", "--user", "root", id, "--", "id", "-u"}, "0\n", "", 0},
			{"cwd", "", []string{"exec", "--cwd", "/tmp", id, "--", "pwd"}, "/tmp\n", "", 0},
			{"stdin with -i", "hello\n", []string{"exec", "-i", id, "--", "cat"}, "hello\n", "", 0},
			{"no stdin without -i", "hello\n", []string{"exec", id, "--", "cat"}, "", "", 0},
			{"flags after the ID belong to the command", "", []string{"exec", id, "echo", "--user", "root"}, "--user root\n", "", 0},
			{"command not found", "", []string{"exec", id, "--", "no-such-command"}, "", "no-such-command: not found", 127},
			{"signal", "", []string{"exec", id, "--", "sh", "-c", "kill -TERM $$"}, "", "", 128 + 15},
			{"unknown sandbox", "", []string{"exec", "nosuchsandbox00000000", "--", "true"}, "", "not found", 1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out, stderr, code := srv.CLI(ctx, strings.NewReader(tt.stdin), tt.args...)
				if out != tt.stdout || code != tt.code || !strings.Contains(stderr, tt.stderr) {
					t.Fatalf("sbx %q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr containing %q",
						tt.args, code, out, stderr, tt.code, tt.stdout, tt.stderr)
				}
				noTrace(t, stderr)
			})
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		tests := []struct {
			args   []string
			stderr string
		}{
			{[]string{"exec"}, "no sandbox ID"},
			{[]string{"exec", id}, "no command"},
			{[]string{"exec", "--bogus", id, "--", "true"}, "flag provided but not defined: -bogus"},
			{[]string{"frobnicate"}, `unknown command "frobnicate"`},
			{[]string{"timeout", id, "soon"}, "want a duration"},
			{[]string{"key", "rotate"}, `unknown subcommand "rotate"`},
		}
		for _, tt := range tests {
			out, stderr, code := srv.CLI(ctx, nil, tt.args...)
			if code != 2 || out != "" || !strings.Contains(stderr, tt.stderr) || !strings.Contains(stderr, "Usage: sbx") {
				t.Errorf("sbx %q: exit %d, stdout %q, stderr %q; want exit 2 and usage with %q", tt.args, code, out, stderr, tt.stderr)
			}
		}
	})

	t.Run("run", func(t *testing.T) {
		before := sandboxIDs(t, ctx, srv)
		tests := []struct {
			args   []string
			stdout string
			code   int
		}{
			{[]string{"run", "--", "python3", "-c", "print(6*7)"}, "42\n", 0},
			{[]string{"run", "--", "sh", "-c", "exit 9"}, "", 9},
			{[]string{"run", "--user", "root", "--env", "X=1", "--", "sh", "-c", "echo $(id -u)$X"}, "01\n", 0},
		}
		for _, tt := range tests {
			out, stderr, code := srv.CLI(ctx, nil, tt.args...)
			if out != tt.stdout || code != tt.code {
				t.Errorf("sbx %q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q", tt.args, code, out, stderr, tt.code, tt.stdout)
			}
			if after := sandboxIDs(t, ctx, srv); !slices.Equal(after, before) {
				t.Errorf("sbx %q left sandboxes: before %v, after %v", tt.args, before, after)
			}
		}
	})

	t.Run("timeout", func(t *testing.T) {
		if out, stderr, code := srv.CLI(ctx, nil, "timeout", id, "0"); code != 0 || out != "" {
			t.Fatalf("sbx timeout %s 0: exit %d, stdout %q, stderr %q", id, code, out, stderr)
		}
		// No limit is the zero time, both in the SDK's type and on the
		// wire, and "never" in the table.
		raw := cliOK(t, ctx, srv, "ls", "--json")
		if !strings.Contains(raw, `"endAt": "0001-01-01T00:00:00Z"`) {
			t.Errorf("sbx ls --json after timeout 0:\n%s", raw)
		}
		if info := lsJSON(t, ctx, srv, id); info == nil || info.HasTimeout() {
			t.Fatalf("sandbox still has a time limit: %+v", info)
		}
		if table := cliOK(t, ctx, srv, "ls"); !regexp.MustCompile(`(?m)^` + id + `\s.*\snever$`).MatchString(table) {
			t.Fatalf("sbx ls does not show %s ending never:\n%s", id, table)
		}

		set := time.Now()
		cliOK(t, ctx, srv, "timeout", id, "90")
		if info := lsJSON(t, ctx, srv, id); info == nil || info.EndAt.Sub(set) < 85*time.Second || info.EndAt.Sub(set) > 95*time.Second {
			t.Fatalf("after sbx timeout %s 90: %+v", id, info)
		}
		cliOK(t, ctx, srv, "timeout", id, "1h")
		if info := lsJSON(t, ctx, srv, id); info == nil || info.EndAt.Sub(set) < 59*time.Minute {
			t.Fatalf("after sbx timeout %s 1h: %+v", id, info)
		}
	})

	t.Run("shell", func(t *testing.T) { testShell(t, ctx, srv, id) })

	t.Run("kill", func(t *testing.T) {
		var ids []string
		for range 2 {
			sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, sb.ID)
		}
		if out := cliOK(t, ctx, srv, "kill", ids[0]); out != ids[0]+"\n" {
			t.Fatalf("sbx kill stdout %q", out)
		}
		if _, stderr, code := srv.CLI(ctx, nil, "exec", ids[0], "--", "true"); code != 1 || !strings.Contains(stderr, "not found") {
			t.Fatalf("sbx exec on a killed sandbox: exit %d, stderr %q", code, stderr)
		}
		_, stderr, code := srv.CLI(ctx, nil, "kill", ids[0])
		if code != 1 || !strings.Contains(stderr, ids[0]) || !strings.Contains(stderr, "not found") {
			t.Fatalf("second sbx kill: exit %d, stderr %q", code, stderr)
		}
		noTrace(t, stderr)

		// One unknown ID fails the command but not the kills around it.
		out, stderr, code := srv.CLI(ctx, nil, "kill", "nosuchsandbox00000000", ids[1])
		if code != 1 || out != ids[1]+"\n" || !strings.Contains(stderr, "nosuchsandbox00000000") {
			t.Fatalf("sbx kill with an unknown ID: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		if _, err := srv.Client.GetSandbox(ctx, ids[1]); !client.IsNotFound(err) {
			t.Fatalf("sandbox after sbx kill: %v", err)
		}
	})

	t.Run("keys", func(t *testing.T) {
		out, stderr, code := srv.CLI(ctx, nil, "key", "create", "--name", "ci", "--json")
		if code != 0 {
			t.Fatalf("sbx key create: exit %d, stderr %q", code, stderr)
		}
		var nk client.NewKey
		decodeStrict(t, out, &nk)
		if !regexp.MustCompile(`^e2b_[0-9a-f]{40}$`).MatchString(nk.Key) || nk.Name != "ci" || nk.ID == "" || nk.Admin {
			t.Fatalf("sbx key create --json: %s", out)
		}
		if strings.Contains(stderr, nk.Key) || !strings.Contains(stderr, nk.ID) {
			t.Fatalf("sbx key create stderr %q: want the ID and not the secret", stderr)
		}

		out = cliOK(t, ctx, srv, "key", "ls", "--json")
		if strings.Contains(out, nk.Key) {
			t.Fatalf("sbx key ls shows the secret:\n%s", out)
		}
		var keys []client.Key
		decodeStrict(t, out, &keys)
		i := slices.IndexFunc(keys, func(k client.Key) bool { return k.ID == nk.ID })
		if i < 0 || keys[i].Name != "ci" || keys[i].Prefix == "" || !strings.HasPrefix(nk.Key, keys[i].Prefix) || keys[i].Admin {
			t.Fatalf("sbx key ls --json, looking for %s:\n%s", nk.ID, out)
		}
		if !strings.Contains(cliOK(t, ctx, srv, "key", "ls"), nk.ID) {
			t.Fatal("sbx key ls does not show the new key")
		}

		if out, stderr, code := cliAs(ctx, srv, nk.Key, "ls"); code != 0 || !strings.Contains(out, id) {
			t.Fatalf("sbx ls with the new key: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		cliOK(t, ctx, srv, "key", "rm", nk.ID)
		out, stderr, code = cliAs(ctx, srv, nk.Key, "ls")
		if code != 1 || out != "" || !strings.Contains(stderr, "API key") || !strings.Contains(stderr, "SBX_API_KEY") {
			t.Fatalf("sbx ls with a removed key: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		if _, stderr, code := srv.CLI(ctx, nil, "key", "rm", nk.ID); code != 1 || !strings.Contains(stderr, "not found") {
			t.Fatalf("second sbx key rm: exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("template ls", func(t *testing.T) {
		var ts []client.Template
		decodeStrict(t, cliOK(t, ctx, srv, "template", "ls", "--json"), &ts)
		i := slices.IndexFunc(ts, func(tm client.Template) bool { return tm.TemplateID == "base" })
		if i < 0 || ts[i].SizeBytes <= 0 || ts[i].BuildStatus != "ready" {
			t.Fatalf("templates: %+v", ts)
		}
	})

	t.Run("template rm", func(t *testing.T) { testTemplateRm(t, ctx) })

	t.Run("connection refused", func(t *testing.T) {
		out, stderr, code := srv.CLI(ctx, nil, "--url", "http://127.0.0.1:1", "ls")
		if code != 1 || out != "" || !strings.HasPrefix(stderr, "sbx ls: ") || !strings.Contains(stderr, "connection refused") {
			t.Fatalf("sbx ls with nothing listening: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		noTrace(t, stderr)
	})
}

// testShell runs `sbx shell` on a real pseudo-terminal whose slave is the
// CLI's controlling terminal, as in a user's terminal emulator.
func testShell(t *testing.T, ctx context.Context, srv *harness.Server, id string) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 80}); err != nil {
		t.Fatal(err)
	}
	cmd := cliCmd(ctx, srv, srv.APIKey, "shell", id)
	cmd.Env = append(cmd.Env, "TERM=dumb")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	// Session leader with the terminal as its controlling terminal: the
	// kernel then sends it SIGWINCH when the terminal is resized.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	screen := newWatcher()
	go io.Copy(screen, ptmx) // ends with EIO once every slave fd is closed

	if _, err := ptmx.WriteString("stty size; echo shell-$((6*7))\n"); err != nil {
		t.Fatal(err)
	}
	screen.await(t, "24 80")
	screen.await(t, "shell-42")
	// The CLI starts watching for SIGWINCH as soon as the remote shell has
	// started, well before the shell's output can come back here.
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	// The resize reaches the sandbox as a request of its own, beside the
	// typed input, so a line typed right after it can still read the old
	// size (as over ssh): ask until the new size shows.
	screen.awaitAsking(t, "30 100", func() {
		if _, err := ptmx.WriteString("stty size\n"); err != nil {
			t.Error(err)
		}
	})
	if _, err := ptmx.WriteString("exit 4\n"); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	select {
	case err := <-exited:
		if !errors.As(err, &ee) || ee.ExitCode() != 4 {
			t.Fatalf("sbx shell: %v, want exit status 4; screen %q", err, screen.buf)
		}
	case <-ctx.Done():
		t.Fatalf("sbx shell did not exit; screen %q", screen.buf)
	}
	// The CLI put the terminal in raw mode; it must give it back cooked.
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&(unix.ICANON|unix.ECHO) != unix.ICANON|unix.ECHO {
		t.Fatalf("terminal left in raw mode: lflag %#x", tio.Lflag)
	}
}

// testTemplateRm removes a template through the CLI: refused while a sandbox
// uses it, done once none does. It runs its own server on a hard-linked
// copy of the shared template cache, so that a regression cannot delete the
// machine's base template (whose rebuild takes minutes and the network), and
// puts the copy back before the harness's cleanup restarts that server.
func testTemplateRm(t *testing.T, ctx context.Context) {
	dir := t.TempDir()
	linkBase := func() {
		if _, err := os.Stat(filepath.Join(dir, "base")); err == nil {
			return
		}
		if out, err := exec.Command("cp", "-al", filepath.Join(harness.TemplatesDir(), "base"), dir).CombinedOutput(); err != nil {
			t.Fatalf("copy the base template (the test temp dir must be on the cache's file system): %v\n%s", err, out)
		}
	}
	linkBase()
	srv := harness.Start(t, "--templates-dir", dir)
	// The harness's cleanup starts the server again to kill what is left;
	// without a base template it would spend minutes building one.
	t.Cleanup(linkBase)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	out, stderr, code := srv.CLI(ctx, nil, "template", "rm", "base")
	if code != 1 || out != "" || !strings.Contains(stderr, "base") || !strings.Contains(stderr, "used by 1 sandbox") {
		t.Fatalf("sbx template rm of a template in use: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if !strings.Contains(cliOK(t, ctx, srv, "template", "ls"), "base") {
		t.Fatal("template gone after a refused sbx template rm")
	}
	if _, err := os.Stat(filepath.Join(dir, "base", "meta.json")); err != nil {
		t.Fatalf("template files after a refused sbx template rm: %v", err)
	}

	if err := sb.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	cliOK(t, ctx, srv, "template", "rm", "base")
	var ts []client.Template
	decodeStrict(t, cliOK(t, ctx, srv, "template", "ls", "--json"), &ts)
	if len(ts) != 0 {
		t.Fatalf("templates after sbx template rm: %+v", ts)
	}
	if _, stderr, code := srv.CLI(ctx, nil, "template", "rm", "base"); code != 1 || !strings.Contains(stderr, "not found") {
		t.Fatalf("second sbx template rm: exit %d, stderr %q", code, stderr)
	}
}

// cliOK runs the CLI and fails the test unless it exits 0; it returns stdout.
func cliOK(t *testing.T, ctx context.Context, srv *harness.Server, args ...string) string {
	t.Helper()
	out, stderr, code := srv.CLI(ctx, nil, args...)
	if code != 0 {
		t.Fatalf("sbx %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, stderr)
	}
	return out
}

// cliCmd returns the CLI command for srv, authenticated with key.
func cliCmd(ctx context.Context, srv *harness.Server, key string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(srv.Bin, "sbx"), args...)
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+key)
	return cmd
}

// cliAs runs the CLI with API key key and returns its stdout, stderr and
// exit code.
func cliAs(ctx context.Context, srv *harness.Server, key string, args ...string) (stdout, stderr string, code int) {
	cmd := cliCmd(ctx, srv, key, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		code = -1
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

// lsJSON returns sandbox id as `sbx ls --json` shows it, or nil.
func lsJSON(t *testing.T, ctx context.Context, srv *harness.Server, id string) *client.SandboxInfo {
	t.Helper()
	var list []client.SandboxInfo
	decodeStrict(t, cliOK(t, ctx, srv, "ls", "--json"), &list)
	for i := range list {
		if list[i].SandboxID == id {
			return &list[i]
		}
	}
	return nil
}

// sandboxIDs returns the IDs of the server's sandboxes, sorted.
func sandboxIDs(t *testing.T, ctx context.Context, srv *harness.Server) []string {
	t.Helper()
	list, err := srv.Client.ListSandboxes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, s := range list {
		ids = append(ids, s.SandboxID)
	}
	slices.Sort(ids)
	return ids
}

// decodeStrict decodes --json output into v, which must be the SDK's type:
// an unknown field or trailing data fails the test.
func decodeStrict(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, s)
	}
	if dec.More() {
		t.Fatalf("trailing data after the JSON:\n%s", s)
	}
}

// noTrace fails the test if stderr looks like a crash rather than a message.
func noTrace(t *testing.T, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "panic:") || strings.Contains(stderr, "goroutine ") || strings.Count(stderr, "\n") > 3 {
		t.Fatalf("stderr is not a short message:\n%s", stderr)
	}
}
