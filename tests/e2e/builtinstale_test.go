package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/tests/harness"
)

// TestBuiltinStaleRemoved: a code-interpreter-v1 built by an older sbx
// (another package list in its source) is removed when sbx serve starts,
// so that its next use builds it with this sbx's packages; base, built by
// the same sbx, stays. The server runs on a private copy of the template
// cache: removing the shared cache's copy would pull it from under other
// tests.
func TestBuiltinStaleRemoved(t *testing.T) {
	harness.Require(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	shared := harness.TemplatesDir()
	if _, err := os.Stat(filepath.Join(shared, "base", "meta.json")); err != nil {
		t.Fatalf("no base template in %s (any e2e test builds it first: run go test -run TestHealth ./tests/e2e): %v", shared, err)
	}
	if b, err := exec.Command("cp", "-a", filepath.Join(shared, "base"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy base: %v: %s", err, b)
	}
	// An old code-interpreter-v1: base's settings (and id shift), the
	// package list of an sbx without R.
	b, err := os.ReadFile(filepath.Join(dir, "base", "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	meta["name"] = "code-interpreter-v1"
	meta["source"] = "debootstrap bookworm (python3,nodejs,git,curl,ca-certificates,procps,npm,python3-ipykernel,fonts-dejavu-core)"
	ci := filepath.Join(dir, "code-interpreter-v1")
	if err := os.MkdirAll(filepath.Join(ci, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(meta)
	if err := os.WriteFile(filepath.Join(ci, "meta.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SBX_TEST_TEMPLATES", dir)
	srv := harness.Start(t)
	// Start returns once the server is ready, which is after the check.
	if _, err := os.Stat(ci); !os.IsNotExist(err) {
		t.Fatalf("the out-of-date code-interpreter-v1 is still there (stat: %v)", err)
	}
	if !strings.Contains(srv.Logs(), "removed out-of-date built-in template") {
		t.Fatalf("no log line of the removal:\n%s", srv.Logs())
	}
	if _, err := os.Stat(filepath.Join(dir, "base", "meta.json")); err != nil {
		t.Fatalf("base went: %v", err)
	}
}
