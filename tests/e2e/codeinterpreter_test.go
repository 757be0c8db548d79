package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/tests/harness"
)

// TestCodeInterpreter runs tests/e2b-js/codeinterpreter.spec.js, the
// unmodified @e2b/code-interpreter package driving sbx's code interpreter,
// after building its template with `sbx template build
// code-interpreter-v1` (cached in the harness's template directory like
// base, so only the first run on a machine builds it).
func TestCodeInterpreter(t *testing.T) {
	dir := filepath.Join(harness.RepoRoot(), "tests", "e2b-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@e2b", "code-interpreter", "package.json")); err != nil {
		t.Fatal("the @e2b/code-interpreter npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/setup.sh")
	}
	srv := harness.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	out, stderr, code := srv.CLI(ctx, nil, "template", "build", "code-interpreter-v1")
	if code != 0 || strings.TrimSpace(out) != "code-interpreter-v1" {
		t.Fatalf("sbx template build code-interpreter-v1: exit %d, stdout %q, stderr:\n%s", code, out, stderr)
	}
	t.Logf("sbx template build code-interpreter-v1:\n%s", stderr)

	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "--test-force-exit", "codeinterpreter.spec.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey)
	b, err := cmd.CombinedOutput()
	t.Logf("node --test codeinterpreter.spec.js output:\n%s", b)
	if err != nil {
		t.Fatalf("code interpreter suite failed: %v", err)
	}
}
