package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	// With a warm pool, as sbx serve runs by default: the SDK's creates
	// (with envs, metadata, timeouts, lifecycles, network settings) take
	// pooled sandboxes.
	srv := harness.Start(t, "--warm-pool", "2")
	cmd := exec.Command("npm", "test")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey)
	out, err := cmd.CombinedOutput()
	t.Logf("npm test output:\n%s", out)
	if err != nil {
		t.Fatalf("e2b JavaScript suite failed: %v", err)
	}
	if n := strings.Count(srv.Logs(), "warm=true"); n == 0 {
		t.Fatal("no create of the e2b suite took a pooled sandbox")
	} else {
		t.Logf("%d creates of the e2b suite took a pooled sandbox", n)
	}
}
