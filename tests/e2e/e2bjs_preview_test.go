package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sbxdev/sbx/tests/harness"
)

// TestE2BJavaScriptPreviewTLS runs tests/e2b-js/preview.test.js against sbx
// set up as a real deployment would be (docs/operations.md): on port 443
// with a wildcard certificate for *.sbx.test and --domain sbx.test. The
// SDK is given only E2B_DOMAIN and the key; the wildcard DNS record is
// played by resolve.js (every *.sbx.test name resolves to the server's
// loopback address) and the CA is trusted through NODE_EXTRA_CA_CERTS.
// (TestE2BJavaScriptSDK runs the same file against the default set-up.)
func TestE2BJavaScriptPreviewTLS(t *testing.T) {
	dir := filepath.Join(harness.RepoRoot(), "tests", "e2b-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		t.Fatal("the e2b npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/setup.sh")
	}
	// A loopback address of its own, so port 443 is free whatever else
	// runs on the machine.
	ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(250), rand.IntN(256), 1+rand.IntN(250))
	const domain = "sbx.test"
	ca := harness.NewCA(t, "*."+domain, domain, ip)
	srv := harness.StartTLS(t, ca, "--listen", ip+":443", "--domain", domain)
	cmd := exec.Command("node", "--test", "--test-reporter=spec", "--test-force-exit", "preview.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey,
		"SBX_TLS_DOMAIN="+domain, "SBX_TEST_HOSTS="+domain+"="+ip,
		"NODE_EXTRA_CA_CERTS="+ca.CAFile)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test preview.test.js output:\n%s", out)
	if err != nil {
		t.Fatalf("e2b JavaScript preview suite over TLS failed: %v", err)
	}
}
