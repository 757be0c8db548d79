package agentapi

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/sbxdev/sbx"

// TestOnlyTheAgentImportsIt fails when a package other than the agent's own
// (cmd/sbx-agent, internal/agent/...) depends on internal/agent, tests
// included: the server talks to the agent through this package and the
// envd protocol only. It also keeps this package a leaf.
func TestOnlyTheAgentImportsIt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(gobin, "list", "-test", "-f",
		`{{.ImportPath}}|{{join .Deps " "}}`, module+"/...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	agent := module + "/internal/agent"
	self := module + "/internal/agentapi"
	leaves := map[string]bool{module + "/internal/errdefs": true, module + "/internal/atomicfile": true}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 20 {
		t.Fatalf("go list listed only %d packages", len(lines))
	}
	for _, line := range lines {
		pkg, deps, _ := strings.Cut(line, "|")
		// A test variant is "p [p.test]" or "p.test"; its package is p.
		base, _, _ := strings.Cut(pkg, " ")
		base = strings.TrimSuffix(base, ".test")
		isAgent := base == agent || strings.HasPrefix(base, agent+"/") || base == module+"/cmd/sbx-agent"
		for _, d := range strings.Fields(deps) {
			if !isAgent && (d == agent || strings.HasPrefix(d, agent+"/")) {
				t.Errorf("%s imports %s: use internal/agentapi for the agent's contract", pkg, d)
			}
			if base == self && !strings.HasSuffix(pkg, ".test") && !strings.Contains(pkg, "[") &&
				strings.HasPrefix(d, module+"/") && !leaves[d] {
				t.Errorf("%s imports %s: the contract must stay a leaf", pkg, d)
			}
		}
	}
}
