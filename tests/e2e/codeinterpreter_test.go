package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
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

// ciWarmReady matches the log line of a sandbox of the code interpreter's
// own warm pool made ready.
var ciWarmReady = regexp.MustCompile(`msg="warm sandbox ready" sandbox_id=([a-z0-9]{20}) template=code-interpreter-v1`)

// kernelAge is Python that evaluates to how long ago, in seconds, its
// kernel process started.
const kernelAge = `import os
with open('/proc/self/stat') as f:
    _st = f.read()
_start = int(_st.rsplit(')', 1)[1].split()[19])
with open('/proc/uptime') as f:
    _up = float(f.read().split()[0])
_up - _start / os.sysconf('SC_CLK_TCK')`

// TestCodeInterpreterWarm: with --warm-pool-template code-interpreter-v1=1
// a create of the code interpreter takes a pooled sandbox whose default
// kernel started before the create (its first runCode starts none), with
// the request's metadata and timeout; a create with environment variables
// of its own starts a sandbox whose kernel has them; the pool refills. The
// Go SDK's RunCode drives it.
func TestCodeInterpreterWarm(t *testing.T) {
	srv := harness.Start(t, "--warm-pool-template", "code-interpreter-v1=1")
	ctx := ctxFor(t, 20*time.Minute)
	c := srv.Client
	awaitLog := func(n int) []string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Minute) // a bare host builds the template first
		for {
			var ids []string
			for _, m := range ciWarmReady.FindAllStringSubmatch(srv.Logs(), -1) {
				ids = append(ids, m[1])
			}
			if len(ids) >= n {
				return ids
			}
			if time.Now().After(deadline) {
				t.Fatalf("the code interpreter's warm pool made fewer than %d sandboxes ready; log tail:\n%s", n, tail(srv.Logs(), 4000))
			}
			time.Sleep(100 * time.Millisecond) // the log is the only sign of it
		}
	}
	pooled := awaitLog(1)[0]

	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: "code-interpreter-v1", Metadata: map[string]string{"who": "warm"}, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	t.Cleanup(func() { sb.Kill(context.Background()) })
	if sb.ID != pooled {
		t.Fatalf("create took %s, not the pooled sandbox %s", sb.ID, pooled)
	}
	ex, err := sb.RunCode(ctx, kernelAge, nil)
	if err != nil || ex.Error != nil {
		t.Fatalf("runCode: %+v %v", ex, err)
	}
	age, err := strconv.ParseFloat(ex.Text(), 64)
	since := time.Since(created).Seconds()
	if err != nil || age <= since {
		t.Fatalf("the first runCode's kernel is %q s old, %.3f s after the create returned: it was not started in the pool (%v)", ex.Text(), since, err)
	}
	if ex, err := sb.RunCode(ctx, "1+1", nil); err != nil || ex.Text() != "2" {
		t.Fatalf("runCode('1+1') in a pooled sandbox: %+v %v", ex, err)
	}
	info, err := c.GetSandbox(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Metadata["who"] != "warm" {
		t.Fatalf("pooled sandbox's metadata: %v", info.Metadata)
	}
	if left := time.Until(info.EndAt); left < 90*time.Second || left > 2*time.Minute+5*time.Second {
		t.Fatalf("pooled sandbox ends in %s, asked for 2m", left)
	}

	// Environment variables of its own: a sandbox of its own, whose
	// kernel sees them; a run's envs are the run's.
	envd, err := c.CreateSandbox(ctx, client.CreateOptions{Template: "code-interpreter-v1", Env: map[string]string{"SBX_WARM_ENV": "mine"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { envd.Kill(context.Background()) })
	for _, id := range awaitLog(1) {
		if id == envd.ID {
			t.Fatalf("a create with envs took pooled sandbox %s", id)
		}
	}
	if ex, err := envd.RunCode(ctx, "import os; os.environ.get('SBX_WARM_ENV')", nil); err != nil || ex.Text() != "'mine'" {
		t.Fatalf("the kernel of a create with envs: %+v %v", ex, err)
	}
	ex, err = sb.RunCode(ctx, "import os; (os.environ.get('RUN_ENV'), os.environ.get('SBX_WARM_ENV'))", &client.RunCodeOptions{Envs: map[string]string{"RUN_ENV": "run"}})
	if err != nil || ex.Text() != "('run', None)" {
		t.Fatalf("a run's envs in a pooled sandbox: %+v %v", ex, err)
	}
	if ex, err := sb.RunCode(ctx, "import os; os.environ.get('RUN_ENV')", nil); err != nil || ex.Text() != "" && ex.Text() != "None" {
		t.Fatalf("a run's envs outlived it: %+v %v", ex, err)
	}

	// The pool refills, and the new one answers once taken.
	ids := awaitLog(2)
	again, err := c.CreateSandbox(ctx, client.CreateOptions{Template: "code-interpreter-v1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Kill(context.Background()) })
	if again.ID != ids[1] {
		t.Fatalf("second create took %s, not the refilled %s", again.ID, ids[1])
	}
	if ex, err := again.RunCode(ctx, "x = 41\nx + 1", nil); err != nil || ex.Text() != "42" {
		t.Fatalf("runCode in the refilled sandbox: %+v %v", ex, err)
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
