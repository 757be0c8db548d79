package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sbxdev/sbx/tests/harness"
)

// TestE2BJavaScriptSDK runs tests/e2b-js, node's test runner driving sbx
// through the unmodified e2b npm package, against a real sbx serve.
func TestE2BJavaScriptSDK(t *testing.T) {
	dir := filepath.Join(harness.RepoRoot(), "tests", "e2b-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		t.Fatal("the e2b npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/setup.sh")
	}
	srv := harness.Start(t)
	cmd := exec.Command("npm", "test")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey)
	out, err := cmd.CombinedOutput()
	t.Logf("npm test output:\n%s", out)
	if err != nil {
		t.Fatalf("e2b JavaScript suite failed: %v", err)
	}
}
