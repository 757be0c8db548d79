package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// xssName is sandbox-controlled text that must show as text in the
// dashboard: as metadata and as a file name.
const xssName = "<img src=x onerror=alert(1)>"

// TestDashboardBrowser runs tests/dashboard, playwright-core driving Debian's
// headless Chromium through the web dashboard of a real sbx serve: sign-in,
// the live list, the terminal, files, metrics, XSS and CSRF cases, sign-out.
// The browser test asks for its sandbox on stdout once the list is open; the
// sandbox is made here with the Go SDK, so it must appear without a reload.
// SBX_SCREENSHOTS=1 makes it write docs/img/dashboard-*.png.
func TestDashboardBrowser(t *testing.T) {
	root := harness.RepoRoot()
	dir := filepath.Join(root, "tests", "dashboard")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatal("playwright-core is not installed: run `npm ci` in tests/dashboard (scripts/test.sh does)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/setup.sh")
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("Chromium is not installed: run scripts/setup.sh (it installs Debian's chromium)")
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "dashboard", "dist", "index.html")); err != nil {
		t.Fatal("the dashboard's assets are not built: run scripts/build-dashboard.sh (scripts/test.sh does)")
	}
	// Samples every second, so that the CPU chart has points soon.
	srv := harness.Start(t, "--metrics-interval", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, "node", "dashboard.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	var sb *client.Sandbox
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		switch {
		case line == "sbx-dashboard-test: need-sandbox":
			sb = dashboardSandbox(ctx, t, srv, stdin)
		case strings.HasPrefix(line, "sbx-dashboard-bench: "):
			t.Logf("dashboard figures: %s", strings.TrimPrefix(line, "sbx-dashboard-bench: "))
		}
	}
	stdin.Close()
	err = cmd.Wait()
	t.Logf("browser test output:\n%s%s", out.String(), stderr.String())
	if err != nil {
		t.Fatalf("the dashboard's browser test failed: %v", err)
	}
	if sb == nil {
		t.Fatal("the browser test never asked for its sandbox")
	}
	// What the browser uploaded is in the sandbox, byte for byte.
	got, err := sb.ReadFile(ctx, "hello-dashboard.txt", nil)
	if err != nil {
		t.Fatalf("read the uploaded file: %v", err)
	}
	if string(got) != "hello from the dashboard\n" {
		t.Fatalf("uploaded file holds %q", got)
	}
	// What the browser saved in its editor, and what it deleted.
	if got, err := sb.ReadFile(ctx, "edit-me.txt", nil); err != nil || string(got) != "after the dashboard's edit\n" {
		t.Fatalf("edited file: %q, %v", got, err)
	}
	if ok, err := sb.Exists(ctx, "delete-me.txt", nil); err != nil || ok {
		t.Fatalf("deleted file still there: %v, %v", ok, err)
	}
}

// dashboardSandbox makes the sandbox the browser test watches for, with
// markup in its metadata and a file named like markup in its home, and
// answers its id on w.
func dashboardSandbox(ctx context.Context, t *testing.T, srv *harness.Server, w io.Writer) *client.Sandbox {
	t.Helper()
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{
		Timeout:  10 * time.Minute,
		Metadata: map[string]string{"xss": xssName, "test": "dashboard"},
	})
	if err != nil {
		t.Errorf("create sandbox: %v", err)
		fmt.Fprintln(w, "error")
		return nil
	}
	t.Cleanup(func() { _ = srv.Client.KillSandbox(context.WithoutCancel(ctx), sb.ID) })
	if _, err := sb.WriteFile(ctx, xssName, strings.NewReader("planted\n"), nil); err != nil {
		t.Errorf("write %q: %v", xssName, err)
	}
	// A small text file the browser edits, and one it deletes.
	for name, body := range map[string]string{"edit-me.txt": "before\n", "delete-me.txt": "doomed\n"} {
		if _, err := sb.WriteFile(ctx, name, strings.NewReader(body), nil); err != nil {
			t.Errorf("write %s: %v", name, err)
		}
	}
	// A process whose command line is markup, for the processes tab.
	if _, err := sb.Start(ctx, client.ExecOptions{Cmd: "/bin/sh", Args: []string{"-c", "sleep 900", xssName}, Tag: "dash-" + xssName}); err != nil {
		t.Errorf("start a process: %v", err)
	}
	fmt.Fprintf(w, "sandbox %s\n", sb.ID)
	return sb
}
