package interp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// python finds an interpreter with IPython, or fails: scripts/setup.sh
// installs Debian's, so a missing one is a broken machine, never a reason
// to skip. (The server is also tested in a sandbox by tests/e2e.)
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import IPython, matplotlib_inline, matplotlib, pandas").Run() == nil {
			return p
		}
	}
	t.Fatal("no python3 with IPython, matplotlib-inline, matplotlib and pandas: run scripts/setup.sh (apt-get install python3-ipykernel python3-matplotlib python3-pandas)")
	return ""
}

func newTestServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	cfg.Python = python(t)
	if cfg.Cwd == "" {
		cfg.Cwd = t.TempDir()
	}
	s := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return hs
}

// execute posts body to /execute and returns the lines of the answer.
func execute(t *testing.T, url string, body map[string]any) []map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url+"/execute", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("execute: %s: %s", resp.Status, msg)
	}
	var out []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func ofType(lines []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["type"] == typ {
			out = append(out, l)
		}
	}
	return out
}

func TestExecute(t *testing.T) {
	hs := newTestServer(t, Config{})
	execute(t, hs.URL, map[string]any{"code": "x = 41"})
	lines := execute(t, hs.URL, map[string]any{"code": "print('hi'); x + 1"})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "42" || r[0]["is_main_result"] != true {
		t.Fatalf("result: %v", lines)
	}
	if o := ofType(lines, "stdout"); len(o) != 1 || o[0]["text"] != "hi\n" {
		t.Fatalf("stdout: %v", lines)
	}
	if n := ofType(lines, "number_of_executions"); len(n) != 1 || n[0]["execution_count"] != 2.0 {
		t.Fatalf("execution count: %v", lines)
	}
	if lines[len(lines)-1]["type"] != "end_of_execution" {
		t.Fatalf("last line: %v", lines)
	}

	lines = execute(t, hs.URL, map[string]any{"code": "1/0"})
	e := ofType(lines, "error")
	if len(e) != 1 || e[0]["name"] != "ZeroDivisionError" || !strings.Contains(e[0]["traceback"].(string), "ZeroDivisionError") {
		t.Fatalf("error: %v", lines)
	}

	lines = execute(t, hs.URL, map[string]any{"code": `
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [4, 5, 6], label="a")
plt.title("t")
plt.show()`})
	r := ofType(lines, "result")
	if len(r) != 1 || r[0]["png"] == nil || r[0]["is_main_result"] != false {
		t.Fatalf("plot: %v", lines)
	}
	chart, _ := r[0]["chart"].(map[string]any)
	if chart["type"] != "line" || chart["title"] != "t" {
		t.Fatalf("chart: %v", r[0]["chart"])
	}

	lines = execute(t, hs.URL, map[string]any{"code": "import pandas as pd\npd.DataFrame({'a': [1, 2]})"})
	r = ofType(lines, "result")
	if len(r) != 1 || !strings.Contains(r[0]["html"].(string), "<table") || r[0]["data"] == nil {
		t.Fatalf("dataframe: %v", lines)
	}

	lines = execute(t, hs.URL, map[string]any{"code": "import os; os.environ.get('FOO')", "env_vars": map[string]string{"FOO": "bar"}})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "'bar'" {
		t.Fatalf("env: %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "import os; os.environ.get('FOO', 'unset')"})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "'unset'" {
		t.Fatalf("env after: %v", lines)
	}
}

func TestBadInput(t *testing.T) {
	hs := newTestServer(t, Config{})
	for _, tc := range []struct {
		name, path, body string
		status           int
	}{
		{"malformed JSON", "/execute", "{", 400},
		{"unknown language", "/execute", `{"code":"1","language":"cobol"}`, 400},
		{"unknown context", "/execute", `{"code":"1","context_id":"nope"}`, 404},
		{"context and language", "/execute", `{"code":"1","context_id":"a","language":"python"}`, 400},
		{"too large", "/execute", `{"code":"` + strings.Repeat("x", MaxRequestBytes) + `"}`, 413},
		{"context of unknown language", "/contexts", `{"language":"cobol"}`, 400},
		{"context in a missing directory", "/contexts", `{"cwd":"/nonexistent"}`, 400},
		{"restart unknown", "/contexts/nope/restart", ``, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(hs.URL+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("%s: %s %s", tc.name, resp.Status, msg)
			}
		})
	}
}

func TestContextsAndRestart(t *testing.T) {
	hs := newTestServer(t, Config{})
	dir := t.TempDir()
	resp, err := http.Post(hs.URL+"/contexts", "application/json", strings.NewReader(`{"cwd":"`+dir+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ ID, Language, Cwd string }
	json.NewDecoder(resp.Body).Decode(&c)
	resp.Body.Close()
	if c.ID == "" || c.Language != "python" || c.Cwd != dir {
		t.Fatalf("context: %+v", c)
	}
	lines := execute(t, hs.URL, map[string]any{"code": "import os; y = 1; os.getcwd()", "context_id": c.ID})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "'"+dir+"'" {
		t.Fatalf("cwd: %v", lines)
	}
	// The kernel dies: a clear error, until a restart.
	lines = execute(t, hs.URL, map[string]any{"code": "import os; os._exit(3)", "context_id": c.ID})
	if e := ofType(lines, "error"); len(e) != 1 || e[0]["name"] != "KernelDied" {
		t.Fatalf("dead kernel: %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "1", "context_id": c.ID})
	if e := ofType(lines, "error"); len(e) != 1 || e[0]["name"] != "KernelDied" {
		t.Fatalf("after death: %v", lines)
	}
	resp, err = http.Post(hs.URL+"/contexts/"+c.ID+"/restart", "application/json", nil)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("restart: %v %v", resp, err)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "'y' in dir()", "context_id": c.ID})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "False" {
		t.Fatalf("after restart: %v", lines)
	}
	req, _ := http.NewRequest("DELETE", hs.URL+"/contexts/"+c.ID, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("delete: %v %v", resp, err)
	}
	resp, _ = http.Get(hs.URL + "/contexts")
	var list []struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&list)
	for _, l := range list {
		if l.ID == c.ID {
			t.Fatal("removed context listed")
		}
	}
}

func TestInterruptAndOutputLimit(t *testing.T) {
	hs := newTestServer(t, Config{OutputLimit: 1 << 20})
	// The default kernel first, so that the client's 2 s below are the
	// cell's, not also the kernel's start (seconds on a loaded machine).
	execute(t, hs.URL, map[string]any{"code": "0"})
	// A client that leaves (the SDK's timeoutMs) interrupts the cell.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/execute", strings.NewReader(`{"code":"import time\nz = 1\ntime.sleep(600)"}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	start := time.Now()
	lines := execute(t, hs.URL, map[string]any{"code": "z + 1"})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "2" {
		t.Fatalf("after interrupt: %v", lines)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the next execution waited %v", d)
	}

	lines = execute(t, hs.URL, map[string]any{"code": "for i in range(100000): print('x' * 100)"})
	total := 0
	for _, l := range ofType(lines, "stdout") {
		total += len(l["text"].(string))
	}
	notes := ofType(lines, "stderr")
	if total > 1<<20 || len(notes) == 0 || !strings.Contains(notes[len(notes)-1]["text"].(string), "truncated") {
		t.Fatalf("output limit: %d bytes of stdout, stderr %v", total, notes)
	}
}

func TestJavaScript(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("no node: run scripts/setup.sh")
	}
	hs := newTestServer(t, Config{})
	js := func(code string) []map[string]any {
		return execute(t, hs.URL, map[string]any{"code": code, "language": "javascript"})
	}
	js("const x = 41; let o = {a: 1}")
	lines := js("console.log('hi'); x + 1")
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "42" || r[0]["is_main_result"] != true {
		t.Fatalf("result: %v", lines)
	}
	if o := ofType(lines, "stdout"); len(o) != 1 || o[0]["text"] != "hi\n" {
		t.Fatalf("stdout: %v", lines)
	}
	lines = js("const v = await new Promise(r => setTimeout(() => r(7), 10)); v * 2")
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "14" {
		t.Fatalf("top-level await: %v", lines)
	}
	if r := ofType(js("v + o.a"), "result"); len(r) != 1 || r[0]["text"] != "8" {
		t.Fatalf("declaration after await kept: %v", r)
	}
	lines = js("throw new TypeError('nope')")
	if e := ofType(lines, "error"); len(e) != 1 || e[0]["name"] != "TypeError" || e[0]["value"] != "nope" {
		t.Fatalf("error: %v", lines)
	}
	lines = js("process.env.GREETING")
	if r := ofType(lines, "result"); len(r) != 0 {
		t.Fatalf("env before: %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "process.env.GREETING", "language": "js", "env_vars": map[string]string{"GREETING": "hi"}})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "'hi'" {
		t.Fatalf("env: %v", lines)
	}
	// An interrupt ends a cell waiting on a promise that never settles;
	// the context keeps its state.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/execute", strings.NewReader(`{"language":"javascript","code":"await new Promise(() => {})"}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if r := ofType(js("x"), "result"); len(r) != 1 || r[0]["text"] != "41" {
		t.Fatalf("after an interrupt: %v", js("x"))
	}
}

// TestBash: a bash context keeps variables, functions and its working
// directory from cell to cell; output streams in order and whole (also
// without a final newline, and across reads); a non-zero exit status is
// an error; a run's env vars last for the run; an interrupt stops a
// command and the shell lives on; `exit` ends the kernel and a restart
// brings a fresh one.
func TestBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("no bash: install bash")
	}
	dir := t.TempDir()
	hs := newTestServer(t, Config{Cwd: dir})
	sh := func(code string) []map[string]any {
		return execute(t, hs.URL, map[string]any{"code": code, "language": "bash"})
	}
	text := func(lines []map[string]any, typ string) string {
		var b strings.Builder
		for _, l := range ofType(lines, typ) {
			b.WriteString(l["text"].(string))
		}
		return b.String()
	}
	if lines := sh("X=41; f() { echo \"f:$1\"; }; mkdir -p sub && cd sub"); len(ofType(lines, "error")) != 0 {
		t.Fatalf("first cell: %v", lines)
	}
	lines := sh("echo $((X + 1)); f a; pwd; printf 'no newline'")
	if got := text(lines, "stdout"); got != "42\nf:a\n"+dir+"/sub\nno newline" {
		t.Fatalf("state across cells: %q (%v)", got, lines)
	}
	if n := ofType(lines, "number_of_executions"); len(n) != 1 || n[0]["execution_count"] != float64(2) {
		t.Fatalf("execution count: %v", lines)
	}
	lines = sh("echo out; echo err >&2; false")
	if text(lines, "stdout") != "out\n" || text(lines, "stderr") != "err\n" {
		t.Fatalf("streams: %v", lines)
	}
	if e := ofType(lines, "error"); len(e) != 1 || e[0]["name"] != "ExitStatus" || e[0]["value"] != "exit status 1" {
		t.Fatalf("exit status as an error: %v", lines)
	}
	if l := lines[len(lines)-1]; l["type"] != "end_of_execution" {
		t.Fatalf("last line: %v", l)
	}
	// Much output, read in many pieces: all of it, none of the markers.
	lines = sh("seq 1 100000")
	if got := text(lines, "stdout"); len(got) != 588895 || !strings.HasPrefix(got, "1\n2\n") || !strings.HasSuffix(got, "99999\n100000\n") || strings.Contains(got, "\x1e") {
		t.Fatalf("seq 1 100000: %d bytes", len(got))
	}
	// A cell reading stdin gets nothing (and does not eat the next cell).
	if got := text(sh("cat; echo after"), "stdout"); got != "after\n" {
		t.Fatalf("stdin: %q", got)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "echo \"$GREETING\"", "language": "bash", "env_vars": map[string]string{"GREETING": "hi"}})
	if got := text(lines, "stdout"); got != "hi\n" {
		t.Fatalf("run env: %q", got)
	}
	if got := text(sh("echo \"${GREETING-unset}\""), "stdout"); got != "unset\n" {
		t.Fatalf("run env after the run: %q", got)
	}
	if got := text(sh("export KEEP=1; GREETING=mine"), "stdout"); got != "" {
		t.Fatalf("%q", got)
	}
	execute(t, hs.URL, map[string]any{"code": "true", "language": "bash", "env_vars": map[string]string{"GREETING": "run"}})
	if got := text(sh("echo \"$GREETING $KEEP\""), "stdout"); got != "mine 1\n" {
		t.Fatalf("a run's env restores the variable it replaced: %q", got)
	}
	b, _ := json.Marshal(map[string]any{"code": "true", "language": "bash", "env_vars": map[string]string{"A-B": "x"}})
	if resp, err := http.Post(hs.URL+"/execute", "application/json", strings.NewReader(string(b))); err != nil || resp.StatusCode != 400 {
		t.Fatalf("a variable name bash cannot have: %v %v", resp, err)
	}
	// An interrupt stops the command; the shell and its state live on.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/execute", strings.NewReader(`{"language":"bash","code":"sleep 600"}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	t0 := time.Now()
	if got := text(sh("echo $X"), "stdout"); got != "41\n" || time.Since(t0) > 5*time.Second {
		t.Fatalf("after an interrupt: %q in %s", got, time.Since(t0))
	}
	// exit ends the kernel, even with a background job holding its output.
	sh("sleep 30 &")
	if e := ofType(sh("exit 3"), "error"); len(e) != 1 || e[0]["name"] != "KernelDied" {
		t.Fatalf("exit: %v", e)
	}
}

// TestTypeScript: a TypeScript context keeps declarations from cell to
// cell, drops types, runs enums and top-level await; code that does not
// parse is a SyntaxError and the context lives on.
func TestTypeScript(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("no node: run scripts/setup.sh")
	}
	hs := newTestServer(t, Config{})
	ts := func(code string) []map[string]any {
		return execute(t, hs.URL, map[string]any{"code": code, "language": "typescript"})
	}
	ts("interface P { n: number }\nconst p: P = { n: 41 }\nenum Color { Red, Green }")
	if r := ofType(ts("const f = (x: number): number => x + 1\nf(p.n)"), "result"); len(r) != 1 || r[0]["text"] != "42" {
		t.Fatalf("state and types: %v", r)
	}
	if r := ofType(ts("Color.Green"), "result"); len(r) != 1 || r[0]["text"] != "1" {
		t.Fatalf("enum: %v", r)
	}
	lines := ts("const v: number = await new Promise<number>(r => setTimeout(() => r(7), 10))\nconsole.log('v', v)\nv * 2")
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "14" {
		t.Fatalf("top-level await: %v", lines)
	}
	if o := ofType(lines, "stdout"); len(o) != 1 || o[0]["text"] != "v 7\n" {
		t.Fatalf("stdout: %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "const broken: = 1", "language": "ts"})
	if e := ofType(lines, "error"); len(e) != 1 || e[0]["name"] != "SyntaxError" || !strings.Contains(e[0]["traceback"].(string), "cell.ts:1:") {
		t.Fatalf("syntax error: %v", lines)
	}
	if l := lines[len(lines)-1]; l["type"] != "end_of_execution" {
		t.Fatalf("last line: %v", l)
	}
	if r := ofType(ts("p.n"), "result"); len(r) != 1 || r[0]["text"] != "41" {
		t.Fatalf("after a syntax error: %v", r)
	}
}

// TestBoxChart: matplotlib box plots, vertical (lines) and horizontal
// (patch_artist), are box_and_whisker charts with each box's quartiles,
// median, whisker ends and outliers, labelled by their ticks.
func TestBoxChart(t *testing.T) {
	hs := newTestServer(t, Config{})
	for _, tc := range []struct{ name, opts string }{{"vertical", ""}, {"horizontal", ", vert=False, patch_artist=True"}} {
		lines := execute(t, hs.URL, map[string]any{"code": "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\n" +
			"ax.boxplot([[1, 2, 3, 4, 5, 40], [10, 20, 30, 40, 50]], labels=['A', 'B']" + tc.opts + ")\nax.set_title('bw')\nplt.show()"})
		r := ofType(lines, "result")
		if len(r) != 1 {
			t.Fatalf("%s: results %v", tc.name, lines)
		}
		b, _ := json.Marshal(r[0]["chart"])
		var chart struct {
			Type     string
			Title    string
			Elements []struct {
				Label                                          string
				Min, FirstQuartile, Median, ThirdQuartile, Max float64
				Outliers                                       []float64
			}
		}
		dec := json.NewDecoder(strings.NewReader(strings.NewReplacer(`"first_quartile"`, `"FirstQuartile"`, `"third_quartile"`, `"ThirdQuartile"`).Replace(string(b))))
		if err := dec.Decode(&chart); err != nil || chart.Type != "box_and_whisker" || chart.Title != "bw" || len(chart.Elements) != 2 {
			t.Fatalf("%s: chart %s (%v)", tc.name, b, err)
		}
		a, bb := chart.Elements[0], chart.Elements[1]
		// numpy's quartiles of 1 2 3 4 5 40: 2.25, 3.5, 4.75; 40 is an outlier.
		if a.Label != "A" || a.Min != 1 || a.FirstQuartile != 2.25 || a.Median != 3.5 || a.ThirdQuartile != 4.75 || a.Max != 5 || len(a.Outliers) != 1 || a.Outliers[0] != 40 {
			t.Fatalf("%s: box A %+v", tc.name, a)
		}
		if bb.Label != "B" || bb.Min != 10 || bb.FirstQuartile != 20 || bb.Median != 30 || bb.ThirdQuartile != 40 || bb.Max != 50 || len(bb.Outliers) != 0 {
			t.Fatalf("%s: box B %+v", tc.name, bb)
		}
	}
}

// rKernel fails unless R with IRkernel is installed: scripts/setup.sh
// installs Debian's (r-base-core, r-cran-irkernel).
func rKernel(t *testing.T) {
	t.Helper()
	if exec.Command("R", "--slave", "-e", "library(IRkernel)").Run() != nil {
		t.Fatal("no R with IRkernel: run scripts/setup.sh (apt-get install --no-install-recommends r-base-core r-cran-irkernel)")
	}
}

func TestR(t *testing.T) {
	rKernel(t)
	hs := newTestServer(t, Config{OutputLimit: 1 << 20})
	dir := t.TempDir()
	resp, err := http.Post(hs.URL+"/contexts", "application/json", strings.NewReader(`{"language":"r","cwd":"`+dir+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ ID, Language, Cwd string }
	json.NewDecoder(resp.Body).Decode(&c)
	resp.Body.Close()
	if resp.StatusCode != 200 || c.Language != "r" || c.Cwd != dir {
		t.Fatalf("context: %s %+v", resp.Status, c)
	}
	run := func(code string, env map[string]string) []map[string]any {
		body := map[string]any{"code": code, "context_id": c.ID}
		if env != nil {
			body["env_vars"] = env
		}
		return execute(t, hs.URL, body)
	}

	run("x <- 41", nil)
	lines := run("cat('hi\\n'); x + 1", nil)
	// IRkernel sends a visible value as display_data, not execute_result
	// (as E2B's server reports it): a result, not the main one.
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "[1] 42" {
		t.Fatalf("result: %v", lines)
	}
	if o := ofType(lines, "stdout"); len(o) != 1 || o[0]["text"] != "hi\n" {
		t.Fatalf("stdout: %v", lines)
	}
	if lines[len(lines)-1]["type"] != "end_of_execution" {
		t.Fatalf("last line: %v", lines)
	}
	if r := ofType(run("getwd()", nil), "result"); len(r) != 1 || r[0]["text"] != `[1] "`+dir+`"` {
		t.Fatalf("cwd: %v", r)
	}

	lines = run("stop('boom')", nil)
	e := ofType(lines, "error")
	if len(e) != 1 || e[0]["name"] != "ERROR" || !strings.Contains(e[0]["value"].(string), "boom") || e[0]["traceback"] == "" {
		t.Fatalf("error: %v", lines)
	}
	lines = run("message('note'); warning('careful')", nil)
	if e := ofType(lines, "stderr"); len(e) != 2 || !strings.Contains(fmt.Sprint(e[0]["text"]), "note") || !strings.Contains(fmt.Sprint(e[1]["text"]), "careful") {
		t.Fatalf("stderr: %v", lines)
	}
	// The context goes on after an error.
	if r := ofType(run("x", nil), "result"); len(r) != 1 || r[0]["text"] != "[1] 41" {
		t.Fatalf("after error: %v", r)
	}

	lines = run("plot(1:10)", nil)
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["png"] == nil || r[0]["is_main_result"] != false {
		t.Fatalf("plot: %v", lines)
	}
	lines = run("data.frame(a = 1:2, b = c('u', 'v'))", nil)
	if r := ofType(lines, "result"); len(r) != 1 || !strings.Contains(fmt.Sprint(r[0]["html"]), "<table") || !strings.Contains(fmt.Sprint(r[0]["text"]), "u") {
		t.Fatalf("data frame: %v", lines)
	}

	// Env vars hold for one execution.
	t.Setenv("SBX_R_TEST", "")
	lines = run("Sys.getenv('SBX_R_ONE')", map[string]string{"SBX_R_ONE": "a \"q\" \\ é"})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != `[1] "a \"q\" \\ é"` {
		t.Fatalf("env: %v", lines)
	}
	if r := ofType(run("Sys.getenv('SBX_R_ONE', unset = 'none')", nil), "result"); len(r) != 1 || r[0]["text"] != `[1] "none"` {
		t.Fatalf("env after: %v", r)
	}

	// A client that leaves (the SDK's timeoutMs) interrupts the cell.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, _ := json.Marshal(map[string]any{"code": "z <- 1; Sys.sleep(600)", "context_id": c.ID})
	req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/execute", strings.NewReader(string(b)))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	start := time.Now()
	if r := ofType(run("z + 1", nil), "result"); len(r) != 1 || r[0]["text"] != "[1] 2" {
		t.Fatalf("after interrupt: %v", r)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the next execution waited %v", d)
	}

	resp, err = http.Post(hs.URL+"/contexts/"+c.ID+"/restart", "application/json", nil)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("restart: %v %v", resp, err)
	}
	if r := ofType(run("exists('x')", nil), "result"); len(r) != 1 || r[0]["text"] != "[1] FALSE" {
		t.Fatalf("after restart: %v", r)
	}
}

// TestPythonKernel: what the Python kernel (pykernel.py over IPython's
// shell) must do as ipykernel did: every display format in order with the
// cell's value last, output of subprocesses, top-level await, magics,
// syntax errors, values JSON cannot hold, and a CPU-bound cell stopped by
// an interrupt with its context kept.
func TestPythonKernel(t *testing.T) {
	hs := newTestServer(t, Config{})
	// The kernel's own first cell left nothing behind.
	lines := execute(t, hs.URL, map[string]any{"code": "len(Out), len(In), _, [k for k in dir() if k.startswith('_sbx')]"})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "(0, 2, '', [])" {
		t.Fatalf("a fresh context: %v", lines)
	}
	if n := ofType(lines, "number_of_executions"); len(n) != 1 || n[0]["execution_count"] != 1.0 {
		t.Fatalf("a fresh context's first execution count: %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": `
from IPython.display import display, Markdown, Latex, JSON, HTML, SVG, Javascript
import sys
print("a")
display(Markdown("# hi"))
print("b", file=sys.stderr)
display(Latex(r"$x^2$"))
display(JSON({"k": 1}))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"/>'))
display(Javascript("1"))
HTML("<b>main</b>")`})
	var got []string
	for _, l := range lines {
		switch l["type"] {
		case "stdout", "stderr":
			got = append(got, l["type"].(string)+":"+l["text"].(string))
		case "result":
			keys := []string{}
			for _, k := range []string{"markdown", "latex", "json", "svg", "javascript", "html"} {
				if l[k] != nil {
					keys = append(keys, k)
				}
			}
			got = append(got, fmt.Sprintf("result:%s:%v", strings.Join(keys, ","), l["is_main_result"]))
		}
	}
	want := "stdout:a\n|result:markdown:false|stderr:b\n|result:latex:false|result:json:false|result:svg:false|result:javascript:false|result:html:true"
	if strings.Join(got, "|") != want {
		t.Fatalf("order:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}

	lines = execute(t, hs.URL, map[string]any{"code": "import os, subprocess\nos.system('echo from-shell')\nsubprocess.run(['sh', '-c', 'echo err-shell >&2'])\nNone"})
	if o := ofType(lines, "stdout"); len(o) != 1 || o[0]["text"] != "from-shell\n" {
		t.Fatalf("a subprocess's stdout: %v", lines)
	}
	if o := ofType(lines, "stderr"); len(o) != 1 || o[0]["text"] != "err-shell\n" {
		t.Fatalf("a subprocess's stderr: %v", lines)
	}

	lines = execute(t, hs.URL, map[string]any{"code": "import asyncio\nawait asyncio.sleep(0.01)\n'awaited'"})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "'awaited'" {
		t.Fatalf("top-level await: %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "%env SBX_MAGIC=1\nimport os\nos.environ['SBX_MAGIC']"})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "'1'" {
		t.Fatalf("a magic: %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "def f(:\n  pass"})
	if e := ofType(lines, "error"); len(e) != 1 || e[0]["name"] != "SyntaxError" {
		t.Fatalf("a syntax error: %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "from IPython.display import JSON\nJSON({'nan': float('nan'), 'b': 1})"})
	if r := ofType(lines, "result"); len(r) != 1 || fmt.Sprint(r[0]["json"]) != "map[b:1 nan:<nil>]" {
		t.Fatalf("NaN in a JSON display: %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "input('?')"})
	if e := ofType(lines, "error"); len(e) != 1 || e[0]["name"] != "StdinNotImplementedError" {
		t.Fatalf("input(): %v", lines)
	}
	lines = execute(t, hs.URL, map[string]any{"code": "_"})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] == "" {
		t.Fatalf("_ after a result: %v", lines)
	}

	// A CPU-bound cell: the interrupt is a KeyboardInterrupt in it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/execute", strings.NewReader(`{"code":"kept = 7\nwhile True: pass"}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	lines = execute(t, hs.URL, map[string]any{"code": "kept * 6"})
	if r := ofType(lines, "result"); len(r) != 1 || r[0]["text"] != "42" {
		t.Fatalf("after interrupting a CPU-bound cell: %v", lines)
	}
}
