package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// startImage writes a docker-archive of a small image with dash as /bin/sh,
// cat, and the static starthelper (a delayed TCP server, sleep), working
// directory /srv and an environment, and returns its path.
func startImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	helper := filepath.Join(dir, "starthelper")
	cmd := exec.Command("go", "build", "-o", helper, "./tests/e2e/testdata/starthelper")
	cmd.Dir = harness.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build starthelper: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "img.tar")
	writeImage(t, filepath.Join(harness.TemplatesDir(), "base", "rootfs"), archive, imageSpec{
		bins:     []string{"usr/bin/dash", "usr/bin/cat"},
		static:   map[string]string{"usr/bin/starthelper": helper},
		symlinks: map[string]string{"usr/bin/sh": "dash"},
		dirs:     []string{"srv/"},
		config: v1.Config{
			Env:        []string{"PATH=/usr/bin", "FROM_TEMPLATE=tpl", "OVERRIDE=tpl"},
			WorkingDir: "/srv",
		},
	})
	return archive
}

// importFor imports archive as a template of the test's own (the template
// directory is shared between runs), removed when the test ends.
func importFor(t *testing.T, ctx context.Context, c *client.Client, suffix, archive string, st client.TemplateSettings) string {
	t.Helper()
	tmpl := fmt.Sprintf("e2e-start-%s-%d", suffix, os.Getpid())
	if _, err := c.ImportTemplate(ctx, client.ImportOptions{Name: tmpl, Source: client.ImportTarball, Path: archive, TemplateSettings: st}); err != nil {
		t.Fatalf("import %s: %v", tmpl, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.DeleteTemplate(ctx, tmpl); err != nil {
			t.Errorf("delete template %s: %v", tmpl, err)
		}
	})
	return tmpl
}

func ptr[T any](v T) *T { return &v }

// TestTemplateStartReady covers templates' start commands and ready checks
// end to end: a server that binds its port only after a delay with a
// ReadyPort check (set by the CLI's import flags), a ReadyCmd that waits
// for a file the start command writes (set through the SDK), a failing
// start command and a ready check that never passes (clear errors, nothing
// left behind), and the template's Env and Workdir as process defaults.
func TestTemplateStartReady(t *testing.T) {
	srv := harness.Start(t, "--ready-timeout", "30s")
	ctx := ctxFor(t, 4*time.Minute)
	c := srv.Client
	archive := startImage(t)

	t.Run("ready port", func(t *testing.T) {
		tmpl := fmt.Sprintf("e2e-start-port-%d", os.Getpid())
		// The server only listens 700 ms after it starts: a create that
		// did not wait for the port would reach nothing below.
		cliOK(t, ctx, srv, "template", "import", tmpl, "--tar", archive,
			"--start-cmd", "exec starthelper serve 8000 700ms", "--ready-port", "8000", "--json")
		t.Cleanup(func() {
			if err := c.DeleteTemplate(context.Background(), tmpl); err != nil {
				t.Errorf("delete template: %v", err)
			}
		})
		d, err := c.InspectTemplate(ctx, tmpl)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(d.StartCmd, " ") != "/bin/sh -c exec starthelper serve 8000 700ms" || d.ReadyPort != 8000 || d.Sandboxes != 0 {
			t.Fatalf("inspect: %+v", d)
		}
		t0 := time.Now()
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
		if err != nil {
			t.Fatalf("create: %v\n%s", err, srv.Logs())
		}
		defer sb.Kill(context.WithoutCancel(ctx))
		if took := time.Since(t0); took < 700*time.Millisecond {
			t.Errorf("create returned after %v, before the server could listen", took)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/", nil)
		req.Header.Set("E2b-Sandbox-Id", sb.ID)
		req.Header.Set("E2b-Sandbox-Port", "8000")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello from start\n" {
			t.Fatalf("port 8000 right after create: %d %q", resp.StatusCode, body)
		}
		// The start command is a tagged process clients can reattach to.
		p, err := sb.ConnectProcess(ctx, client.ConnectProcessOptions{Tag: "start"})
		if err != nil {
			t.Fatalf("connect to the start command by its tag: %v", err)
		}
		p.Disconnect()
		if d, err := c.InspectTemplate(ctx, tmpl); err != nil || d.Sandboxes != 1 {
			t.Errorf("inspect with a sandbox: %+v, %v", d, err)
		}
		// A template in use cannot be deleted, through the API or the CLI.
		if err := c.DeleteTemplate(ctx, tmpl); !errors.Is(err, client.ErrConflict) {
			t.Errorf("delete template in use: %v, want a conflict", err)
		}
		if _, stderr, code := srv.CLI(ctx, nil, "template", "rm", tmpl); code == 0 || !strings.Contains(stderr, "used by 1 sandbox") {
			t.Errorf("sbx template rm of a template in use: code %d, stderr %q", code, stderr)
		}
	})

	t.Run("ready command", func(t *testing.T) {
		tmpl := importFor(t, ctx, c, "cmd", archive, client.TemplateSettings{})
		// Set after the import, through the SDK.
		if _, err := c.SetTemplate(ctx, tmpl, client.TemplateSettings{
			StartCmd: ptr("starthelper sleep 500ms; echo up > /tmp/ready; exec starthelper sleep 1h"),
			ReadyCmd: ptr("[ -f /tmp/ready ]"),
		}); err != nil {
			t.Fatal(err)
		}
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
		if err != nil {
			t.Fatalf("create: %v\n%s", err, srv.Logs())
		}
		defer sb.Kill(context.WithoutCancel(ctx))
		if out := shRun(t, ctx, sb, "cat /tmp/ready", "", nil); out != "up\n" {
			t.Fatalf("/tmp/ready right after create: %q", out)
		}
	})

	t.Run("e2b ready helpers", func(t *testing.T) {
		// The commands the e2b SDK makes of waitForPort(8001) (it needs
		// ss, which this image lacks) and of waitForTimeout(1500) (a sleep
		// that must be let finish).
		tmpl := importFor(t, ctx, c, "e2b", archive, client.TemplateSettings{
			StartCmd: ptr("exec starthelper serve 8001 300ms"),
			ReadyCmd: ptr(`[ -n "$(ss -Htuln sport = :8001)" ]`),
		})
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
		if err != nil {
			t.Fatalf("create with E2B's waitForPort: %v", err)
		}
		defer sb.Kill(context.WithoutCancel(ctx))
		if _, err := c.SetTemplate(ctx, tmpl, client.TemplateSettings{
			StartCmd: ptr("exec starthelper sleep 1h"),
			ReadyCmd: ptr("starthelper sleep 1500ms"),
		}); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		sb2, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
		if err != nil {
			t.Fatalf("create with a sleeping ready command: %v", err)
		}
		defer sb2.Kill(context.WithoutCancel(ctx))
		if took := time.Since(t0); took < 1500*time.Millisecond {
			t.Errorf("create returned after %v, before the ready command's sleep ended", took)
		}
	})

	// noLeftovers checks that no sandbox of tmpl exists, in any state.
	noLeftovers := func(t *testing.T, tmpl string) {
		t.Helper()
		all, err := c.ListSandboxes(ctx, &client.ListOptions{States: []string{"running", "paused", "failed"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range all {
			if s.TemplateID == tmpl {
				t.Errorf("sandbox %s of %s left behind (%s)", s.SandboxID, tmpl, s.State)
			}
		}
		ents, _ := os.ReadDir(filepath.Join(srv.DataDir, "sandboxes"))
		if len(ents) != 0 {
			t.Errorf("sandbox directories left behind: %d", len(ents))
		}
	}

	t.Run("start command fails", func(t *testing.T) {
		tmpl := importFor(t, ctx, c, "fail", archive, client.TemplateSettings{
			StartCmd: ptr("echo boom from start >&2; exit 3"),
			ReadyCmd: ptr("[ -f /tmp/never ]"),
		})
		t0 := time.Now()
		_, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusConflict ||
			!strings.Contains(apiErr.Message, "exited with status 3") || !strings.Contains(apiErr.Message, "boom from start") {
			t.Fatalf("create with a failing start command: %v", err)
		}
		// It failed when the command exited, not at the ready timeout.
		if took := time.Since(t0); took > 15*time.Second {
			t.Errorf("the failure took %v", took)
		}
		// The CLI says the same.
		_, stderr, code := srv.CLI(ctx, nil, "create", "--template", tmpl)
		if code == 0 || !strings.Contains(stderr, "exited with status 3") {
			t.Errorf("sbx create: code %d, stderr %q", code, stderr)
		}
		noLeftovers(t, tmpl)
	})

	t.Run("ready check never passes", func(t *testing.T) {
		tmpl := importFor(t, ctx, c, "never", archive, client.TemplateSettings{
			StartCmd:     ptr("exec starthelper sleep 1h"),
			ReadyPort:    ptr(9),
			ReadyTimeout: ptr(2),
		})
		_, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusConflict ||
			!strings.Contains(apiErr.Message, "not ready within 2s") || !strings.Contains(apiErr.Message, "port 9") {
			t.Fatalf("create with a ready check that never passes: %v", err)
		}
		noLeftovers(t, tmpl)
	})

	t.Run("env and workdir defaults", func(t *testing.T) {
		tmpl := importFor(t, ctx, c, "env", archive, client.TemplateSettings{})
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl, Env: map[string]string{"OVERRIDE": "request"}})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Kill(context.WithoutCancel(ctx))
		if out := shRun(t, ctx, sb, `echo "$FROM_TEMPLATE|$OVERRIDE|$PATH|$(pwd)"`, "", nil); out != "tpl|request|/usr/bin|/srv\n" {
			t.Fatalf("template env/workdir: %q", out)
		}
		// A request's own cwd and env still win.
		if out := shRun(t, ctx, sb, `echo "$FROM_TEMPLATE|$(pwd)"`, "/tmp", map[string]string{"FROM_TEMPLATE": "cmd"}); out != "cmd|/tmp\n" {
			t.Fatalf("request env/cwd: %q", out)
		}
	})
}

// shRun runs cmd with /bin/sh (the small images have no bash) as root and
// returns its stdout; a non-zero exit fails the test.
func shRun(t *testing.T, ctx context.Context, sb *client.Sandbox, cmd, cwd string, env map[string]string) string {
	t.Helper()
	var stdout, stderr strings.Builder
	code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "/bin/sh", Args: []string{"-c", cmd}, User: "root", Cwd: cwd, Env: env, Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 0 {
		t.Fatalf("sh -c %q: code %d, err %v, stderr %q", cmd, code, err, stderr.String())
	}
	return stdout.String()
}
