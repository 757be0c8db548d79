package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestHostCapacity drives a server whose capacity holds one sandbox to
// 503: a second create is refused (and the e2b SDK raises ServiceBusyError
// for it), a sandbox paused to disk frees its room and must find room
// again to resume, a killed one frees it, and a refused create leaves
// nothing behind.
func TestHostCapacity(t *testing.T) {
	// No warm pool: its sandboxes would take the room (they count, as
	// they hold a box).
	srv := harness.Start(t, "--warm-pool", "0", "--memory-mb", "256", "--capacity-memory-mb", "400")
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client

	first, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Kill(context.WithoutCancel(ctx))
	wantBusy := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "out of capacity") {
			t.Fatalf("%s: %v, want 503 out of capacity", what, err)
		}
	}
	_, err = c.CreateSandbox(ctx, client.CreateOptions{})
	wantBusy("second create", err)
	if all, err := c.ListSandboxes(ctx, nil); err != nil || len(all) != 1 {
		t.Fatalf("after a refused create: %v, %v; want the first sandbox only", all, err)
	}
	expectJSError(t, srv, "ServiceBusyError", "out of capacity")

	// Paused to disk, the first holds no box: a second fits, and the
	// first cannot come back while it runs.
	if err := first.Pause(ctx, &client.PauseOptions{FilesOnly: true}); err != nil {
		t.Fatal(err)
	}
	second, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatalf("create with the other sandbox paused to disk: %v", err)
	}
	_, err = c.Resume(ctx, first.ID, nil)
	wantBusy("resume", err)
	if info, err := c.GetSandbox(ctx, first.ID); err != nil || info.State != "paused" {
		t.Fatalf("after a refused resume: %+v, %v; want it paused", info, err)
	}
	if err := second.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resume(ctx, first.ID, nil); err != nil {
		t.Fatalf("resume with room again: %v", err)
	}
}

// expectJSError creates a sandbox through the e2b npm package and checks
// that it fails with the SDK error class named, its message containing
// want.
func expectJSError(t *testing.T, srv *harness.Server, class, want string) {
	t.Helper()
	dir := filepath.Join(harness.RepoRoot(), "tests", "e2b-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		t.Fatal("the e2b npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	script := `import './env.js'
const { Sandbox } = await import('e2b')
try {
  const s = await Sandbox.create('base')
  await s.kill()
  console.log('created')
} catch (err) {
  console.log(err.constructor.name + ': ' + err.message)
}`
	cmd := exec.Command("node", "--input-type=module", "-e", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, class+": ") || !strings.Contains(got, want) {
		t.Fatalf("the e2b SDK's create: %q, want %s mentioning %q", got, class, want)
	}
}
