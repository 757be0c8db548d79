package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// buildCodeInterpreter builds the code interpreter's template on srv
// (cached in the harness's template directory after the first time).
func buildCodeInterpreter(t *testing.T, ctx context.Context, srv *harness.Server) {
	t.Helper()
	out, stderr, code := srv.CLI(ctx, nil, "template", "build", "code-interpreter-v1")
	if code != 0 || strings.TrimSpace(out) != "code-interpreter-v1" {
		t.Fatalf("sbx template build code-interpreter-v1: exit %d, stdout %q, stderr:\n%s", code, out, stderr)
	}
}

// TestCodeInterpreterClients drives the code interpreter with the Go SDK
// and the CLI: streaming order through the callbacks, results (a chart and
// its PNG), errors, a context per language (python, javascript,
// typescript, bash) with its own cwd and state and a run's envs, context
// list/restart/remove, state across Sandbox.connect and across
// pause/resume (runc freezes, runsc saves memory); `sbx code` prints
// streams and results, reads code from stdin, saves images, and exits 1
// with the traceback on an error.
func TestCodeInterpreterClients(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 20*time.Minute)
	buildCodeInterpreter(t, ctx, srv)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: "code-interpreter-v1", Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Kill(context.Background()) })

	// Streaming: the callbacks see the output in the order it was made.
	var events []string
	ex, err := sb.RunCode(ctx, "import sys, time\nprint('a', flush=True)\ntime.sleep(0.2)\nprint('b', file=sys.stderr, flush=True)\ndisplay(7)\nx = 41\n'last'", &client.RunCodeOptions{
		OnStdout: func(s string) { events = append(events, "out:"+s) },
		OnStderr: func(s string) { events = append(events, "err:"+s) },
		OnResult: func(r client.CodeResult) {
			events = append(events, fmt.Sprintf("result:%s:%v", r.Text, r.IsMainResult))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"out:a\n", "err:b\n", "result:7:false", "result:'last':true"}; strings.Join(events, "|") != strings.Join(want, "|") {
		t.Fatalf("streaming order: %q, want %q", events, want)
	}
	if ex.ExecutionCount < 1 || ex.Text() != "'last'" || len(ex.Stdout) != 1 || len(ex.Stderr) != 1 {
		t.Fatalf("execution: %+v", ex)
	}
	var gotErr *client.ExecutionError
	ex, err = sb.RunCode(ctx, "1/0", &client.RunCodeOptions{OnError: func(e client.ExecutionError) { gotErr = &e }})
	if err != nil || ex.Error == nil || ex.Error.Name != "ZeroDivisionError" || gotErr == nil || gotErr.Name != "ZeroDivisionError" || !strings.Contains(ex.Error.Traceback, "ZeroDivisionError") {
		t.Fatalf("an error: %+v %v", ex, err)
	}
	ex, err = sb.RunCode(ctx, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('sq')\nplt.show()", nil)
	if err != nil || len(ex.Results) != 1 || ex.Results[0].PNG == "" {
		t.Fatalf("a plot: %+v %v", ex, err)
	}
	var chart struct {
		Type  string `json:"type"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal(ex.Results[0].Chart, &chart); err != nil || chart.Type != "line" || chart.Title != "sq" {
		t.Fatalf("the plot's chart: %s %v", ex.Results[0].Chart, err)
	}
	if _, err := sb.RunCode(ctx, "1", &client.RunCodeOptions{Language: "python", Context: "x"}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("language and context: %v", err)
	}
	if _, err := sb.RunCode(ctx, "1", &client.RunCodeOptions{Language: "cobol"}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("an unknown language: %v", err)
	}
	if _, err := sb.RunCode(ctx, "1", &client.RunCodeOptions{Context: "nope"}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("an unknown context: %v", err)
	}

	// A context per language, each with its cwd, its state, a run's envs.
	langs := []struct{ lang, set, get, cwd, env string }{
		{"python", "y = 5", "y * 2", "import os; os.getcwd()", "import os; os.environ['RUN_ENV']"},
		{"javascript", "let y = 5", "y * 2", "process.cwd()", "process.env.RUN_ENV"},
		{"typescript", "let y: number = 5", "(y as number) * 2", "process.cwd()", "process.env.RUN_ENV as string"},
		{"bash", "y=5", "echo $((y * 2))", "pwd", "echo $RUN_ENV"},
	}
	ids := map[string]bool{}
	for _, l := range langs {
		cc, err := sb.CreateCodeContext(ctx, &client.CodeContextOptions{Language: l.lang, Cwd: "/tmp"})
		if err != nil {
			t.Fatalf("%s context: %v", l.lang, err)
		}
		ids[cc.ID] = true
		out := func(code string, envs map[string]string) string {
			t.Helper()
			ex, err := sb.RunCode(ctx, code, &client.RunCodeOptions{Context: cc.ID, Envs: envs})
			if err != nil || ex.Error != nil {
				t.Fatalf("%s: %q: %+v %v", l.lang, code, ex, err)
			}
			if s := strings.Join(ex.Stdout, ""); s != "" {
				return strings.TrimSpace(s)
			}
			return strings.Trim(ex.Text(), "'")
		}
		out(l.set, nil)
		if got := out(l.get, nil); got != "10" {
			t.Fatalf("%s: state across runs: %q", l.lang, got)
		}
		if got := out(l.cwd, nil); got != "/tmp" {
			t.Fatalf("%s: the context's cwd: %q", l.lang, got)
		}
		if got := out(l.env, map[string]string{"RUN_ENV": "r-" + l.lang}); got != "r-"+l.lang {
			t.Fatalf("%s: a run's env: %q", l.lang, got)
		}
	}
	list, err := sb.ListCodeContexts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range list {
		delete(ids, cc.ID)
	}
	if len(ids) != 0 {
		t.Fatalf("contexts not listed: %v (list %+v)", ids, list)
	}
	py, err := sb.CreateCodeContext(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	sb.RunCode(ctx, "z = 1", &client.RunCodeOptions{Context: py.ID})
	if err := sb.RestartCodeContext(ctx, py.ID); err != nil {
		t.Fatal(err)
	}
	if ex, err := sb.RunCode(ctx, "z", &client.RunCodeOptions{Context: py.ID}); err != nil || ex.Error == nil || ex.Error.Name != "NameError" {
		t.Fatalf("after a restart: %+v %v", ex, err)
	}
	if err := sb.RemoveCodeContext(ctx, py.ID); err != nil {
		t.Fatal(err)
	}
	if err := sb.RemoveCodeContext(ctx, py.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("remove a removed context: %v", err)
	}

	// State across Sandbox.connect, and across pause and resume.
	again, err := c.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex, err := again.RunCode(ctx, "x + 1", nil); err != nil || ex.Text() != "42" {
		t.Fatalf("after connect: %+v %v", ex, err)
	}
	if err := sb.Pause(ctx, nil); err != nil {
		t.Fatal(err)
	}
	info, err := c.GetSandbox(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"runc": client.PauseFrozen, "runsc": client.PauseMemory}[harness.Runtime()]; info.PauseKind != want {
		t.Fatalf("pause kind on %s: %q, want %q", harness.Runtime(), info.PauseKind, want)
	}
	resumed, err := c.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex, err := resumed.RunCode(ctx, "x + 1", nil); err != nil || ex.Text() != "42" {
		t.Fatalf("after pause and resume (%s): %+v %v", info.PauseKind, ex, err)
	}

	// The CLI.
	cli := func(stdin string, args ...string) (string, string, int) {
		var in io.Reader
		if stdin != "" {
			in = strings.NewReader(stdin)
		}
		return srv.CLI(ctx, in, append([]string{"code", sb.ID}, args...)...)
	}
	if out, stderr, code := cli("", "print('hi')\nx + 1"); code != 0 || out != "hi\n42\n" {
		t.Fatalf("sbx code: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if out, stderr, code := cli("echo from-stdin; echo e >&2\n", "--language", "bash", "-"); code != 0 || out != "from-stdin\n" || stderr != "e\n" {
		t.Fatalf("sbx code --language bash -: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	dir := t.TempDir()
	out, stderr, code := cli("", "--out", dir, "import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [1, 2])\nplt.show()")
	files, _ := filepath.Glob(filepath.Join(dir, "result-*-1.png"))
	if code != 0 || len(files) != 1 || !strings.Contains(stderr, files[0]) {
		t.Fatalf("sbx code with a plot: exit %d, stdout %q, stderr %q, files %v", code, out, stderr, files)
	}
	if b, err := os.ReadFile(files[0]); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("the saved plot is not a PNG: %v", err)
	}
	if out, stderr, code := cli("", "raise ValueError('bad')"); code != 1 || !strings.Contains(stderr, "ValueError: bad") || !strings.Contains(stderr, "Traceback") {
		t.Fatalf("sbx code with an error: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if _, stderr, code := srv.CLI(ctx, nil, "code", "nosuchsandbox", "1"); code != 1 || !strings.Contains(stderr, "nosuchsandbox") {
		t.Fatalf("sbx code on an unknown sandbox: exit %d, stderr %q", code, stderr)
	}
}
