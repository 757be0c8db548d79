package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/cli/fakesbx"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// result is one in-process run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// sbx runs the CLI in-process against fake f (nil: no server), with stdin.
func sbx(t *testing.T, ctx context.Context, f *fakesbx.Server, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	envs := map[string]string{}
	if f != nil {
		envs["SBX_URL"], envs["SBX_API_KEY"] = f.URL, f.APIKey
	}
	e := &env{
		ctx: ctx, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return envs[k] },
		now:    func() time.Time { return time.Date(2025, 1, 2, 4, 4, 5, 0, time.UTC) },
	}
	code := e.main(args)
	return result{code, out.String(), errb.String()}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stderr string // substring
	}{
		{nil, 2, "Usage: sbx"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"--nope"}, 2, "flag provided but not defined"},
		{[]string{"create", "--timeout", "soon"}, 2, "want a duration"},
		{[]string{"create", "--timeout", "-5s"}, 2, "negative"},
		{[]string{"create", "--meta", "novalue"}, 2, "is not K=V"},
		{[]string{"create", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"ls", "--state", "dead"}, 2, "want running or paused"},
		{[]string{"exec"}, 2, "no sandbox ID"},
		{[]string{"exec", "sb1"}, 2, "no command"},
		{[]string{"exec", "sb1", "--"}, 2, "no command"},
		{[]string{"run"}, 2, "no command"},
		{[]string{"shell"}, 2, "want one sandbox ID"},
		{[]string{"kill"}, 2, "no sandbox ID"},
		{[]string{"timeout", "sb1"}, 2, "want a sandbox ID and a duration"},
		{[]string{"timeout", "sb1", "x"}, 2, "want a duration"},
		{[]string{"template"}, 2, "want ls, inspect, rm, import, set or build"},
		{[]string{"template", "zap"}, 2, "unknown subcommand"},
		{[]string{"key", "zap"}, 2, "unknown subcommand"},
		{[]string{"key", "rm"}, 2, "no key ID"},
		{[]string{"help", "zap"}, 2, "unknown command"},
		{[]string{"ls"}, 1, "no API key"},
		{[]string{"--url", "ftp://x", "--api-key", "k", "ls"}, 1, "scheme must be http"},
		{[]string{"ls", "-h"}, 0, "Usage: sbx ls"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := sbx(t, context.Background(), nil, "", tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("code %d, stderr %q; want %d and %q", r.code, r.stderr, tt.code, tt.stderr)
			}
		})
	}
	r := sbx(t, context.Background(), nil, "", "help")
	if r.code != 0 || !strings.Contains(r.stdout, "Commands:") {
		t.Errorf("help: %+v", r)
	}
	r = sbx(t, context.Background(), nil, "", "help", "create")
	if r.code != 0 || !strings.Contains(r.stdout, "-template") {
		t.Errorf("help create: %+v", r)
	}
	r = sbx(t, context.Background(), nil, "", "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "sbx ") {
		t.Errorf("version: %+v", r)
	}
}

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", client.NoTimeout, true},
		{"0s", client.NoTimeout, true},
		{"90", 90 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"-1m", 0, false},
		{"", 0, false},
		{"abc", 0, false},
	}
	for _, tt := range tests {
		got, err := parseTimeout(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseTimeout(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestExitCodeOf(t *testing.T) {
	tests := []struct {
		st   client.ExitStatus
		want int
	}{
		{client.ExitStatus{ExitCode: 0, Exited: true, Status: "exit status 0"}, 0},
		{client.ExitStatus{ExitCode: 3, Exited: true, Status: "exit status 3"}, 3},
		{client.ExitStatus{ExitCode: -1, Status: "signal: killed"}, 137},
		{client.ExitStatus{ExitCode: -1, Status: "signal: terminated"}, 143},
		{client.ExitStatus{ExitCode: -1, Status: "signal: segmentation fault (core dumped)"}, 139},
		{client.ExitStatus{ExitCode: -1, Status: "signal: mystery"}, 1},
		{client.ExitStatus{ExitCode: -1}, 1},
	}
	for _, tt := range tests {
		if got := exitCodeOf(tt.st); got != tt.want {
			t.Errorf("exitCodeOf(%+v) = %d, want %d", tt.st, got, tt.want)
		}
	}
}

func TestSandboxCommands(t *testing.T) {
	f := fakesbx.New(t)
	ctx := context.Background()
	r := sbx(t, ctx, f, "", "create", "--timeout", "0", "--meta", "team=a", "--env", "K=V")
	if r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	id := strings.TrimSpace(r.stdout)
	sb := f.Find(id)
	if sb == nil || sb.Timeout == nil || *sb.Timeout != 0 || sb.Metadata["team"] != "a" || sb.Env["K"] != "V" {
		t.Fatalf("created %+v", sb)
	}
	r = sbx(t, ctx, f, "", "create", "--json", "--timeout", "10m", "--runtime", "runsc")
	var created client.Sandbox
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &created) != nil || created.ID == "" || created.EnvdAccessToken == "" || created.Runtime != "runsc" {
		t.Fatalf("create --json: %+v", r)
	}
	if r := sbx(t, ctx, f, "", "create", "--runtime", "kata"); r.code != 1 || !strings.Contains(r.stderr, `unknown runtime "kata"`) {
		t.Errorf("create --runtime kata: %+v", r)
	}
	if got := f.Find(created.ID).Timeout; got == nil || *got != 600 {
		t.Errorf("create --timeout 10m sent %v", got)
	}

	// Fix the times so that the table is stable.
	f.Lock()
	for _, s := range f.Sandboxes {
		s.StartedAt = time.Date(2025, 1, 2, 4, 0, 0, 0, time.UTC)
	}
	f.Sandboxes[1].EndAt = time.Date(2025, 1, 2, 4, 14, 5, 0, time.UTC)
	f.Unlock()
	r = sbx(t, ctx, f, "", "ls")
	want := "ID       TEMPLATE   RUNTIME   STATE     STARTED   ENDS\n" +
		id + "   base       runc      running   4m ago    never\n" +
		created.ID + "   base       runsc     running   4m ago    in 10m\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("ls:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = sbx(t, ctx, f, "", "ls", "--meta", "team=a", "--json")
	var infos []client.SandboxInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &infos) != nil || len(infos) != 1 || infos[0].SandboxID != id || infos[0].HasTimeout() {
		t.Errorf("ls --meta --json: %+v", r)
	}

	if r = sbx(t, ctx, f, "", "timeout", id, "90s"); r.code != 0 {
		t.Errorf("timeout: %+v", r)
	}
	if got := f.Find(id).Timeout; got == nil || *got != 90 {
		t.Errorf("timeout sent %v", got)
	}
	r = sbx(t, ctx, f, "", "kill", id, "nope", created.ID)
	if r.code != 1 || r.stdout != id+"\n"+created.ID+"\n" || !strings.Contains(r.stderr, "nope: sandbox nope not found (HTTP 404)") {
		t.Errorf("kill: %+v", r)
	}
	if len(f.Sandboxes) != 0 {
		t.Errorf("%d sandboxes left", len(f.Sandboxes))
	}
	r = sbx(t, ctx, f, "", "--api-key", "e2b_00", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "check SBX_API_KEY") {
		t.Errorf("bad key: %+v", r)
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", name, got, want)
	}
}

func TestKeyAndTemplateCommands(t *testing.T) {
	f := fakesbx.New(t)
	ctx := context.Background()
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"key-ls.json", []string{"key", "ls", "--json"}},
		{"key-ls.txt", []string{"key", "ls"}},
		{"key-create.json", []string{"key", "create", "--name", "ci", "--json"}},
		{"template-ls.json", []string{"template", "ls", "--json"}},
		{"template-ls.txt", []string{"template", "ls"}},
		{"template-inspect.json", []string{"template", "inspect", "web", "--json"}},
		{"template-inspect.txt", []string{"template", "inspect", "web"}},
	} {
		r := sbx(t, ctx, f, "", tc.args...)
		if r.code != 0 {
			t.Errorf("%v: %+v", tc.args, r)
			continue
		}
		golden(t, tc.golden, r.stdout)
	}
	r := sbx(t, ctx, f, "", "key", "create", "--name", "ci")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "e2b_") || !strings.Contains(r.stderr, "not shown again") {
		t.Errorf("key create: %+v", r)
	}
	if r := sbx(t, ctx, f, "", "key", "rm", "k1"); r.code != 0 {
		t.Errorf("key rm: %+v", r)
	}
	if r := sbx(t, ctx, f, "", "create"); r.code != 0 {
		t.Fatal(r)
	}
	r = sbx(t, ctx, f, "", "template", "rm", "base")
	if r.code != 1 || !strings.Contains(r.stderr, "template in use (HTTP 409)") {
		t.Errorf("template rm in use: %+v", r)
	}

	// template set sends only the flags given.
	r = sbx(t, ctx, f, "", "template", "set", "web", "--start-cmd", "", "--ready-cmd", "curl -sf localhost:8000", "--cpus", "2", "--env", "A=1")
	if r.code != 0 || !strings.Contains(r.stdout, "Ready check") {
		t.Fatalf("template set: %+v", r)
	}
	last := f.Requests[len(f.Requests)-1]
	var body map[string]any
	if err := json.Unmarshal([]byte(last.Body), &body); err != nil || last.Method != "PATCH" || last.Path != "/sbx/v1/templates/web" {
		t.Fatalf("template set sent %s %s %q", last.Method, last.Path, last.Body)
	}
	if len(body) != 4 || body["startCmd"] != "" || body["readyCmd"] != "curl -sf localhost:8000" || body["cpuCount"] != 2.0 ||
		body["env"].(map[string]any)["A"] != "1" {
		t.Errorf("template set body: %s", last.Body)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"template", "set", "web"}, "nothing to set"},
		{[]string{"template", "set", "web", "--ready-port", "70000"}, "--ready-port must be"},
		{[]string{"template", "inspect"}, "want one template name"},
		{[]string{"template", "import", "x", "--tar", "/x", "--ready-port", "-1"}, "--ready-port must be"},
	} {
		if r := sbx(t, ctx, f, "", tc.args...); r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %+v, want usage error %q", tc.args, r, tc.want)
		}
	}
	if r := sbx(t, ctx, f, "", "template", "inspect", "nope"); r.code != 1 || !strings.Contains(r.stderr, "template not found (HTTP 404)") {
		t.Errorf("template inspect of a missing template: %+v", r)
	}
}

func TestExec(t *testing.T) {
	f := fakesbx.New(t)
	ctx := context.Background()
	id := strings.TrimSpace(sbx(t, ctx, f, "", "create").stdout)

	r := sbx(t, ctx, f, "", "exec", "--env", "FOO=bar", id, "--", "sh", "-c", "echo out $FOO; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "out bar\n" || r.stderr != "err\n" {
		t.Errorf("exec: %+v", r)
	}
	r = sbx(t, ctx, f, "piped\n", "exec", "-i", "--user", "root", "--no-login", id, "cat")
	if r.code != 0 || r.stdout != "piped\n" {
		t.Errorf("exec -i: %+v", r)
	}
	if u := f.Users[len(f.Users)-1]; u != "root" {
		t.Errorf("user %q, want root", u)
	}
	r = sbx(t, ctx, f, "ignored", "exec", id, "--", "cat")
	if r.code != 0 || r.stdout != "" {
		t.Errorf("exec without -i read stdin: %+v", r)
	}
	r = sbx(t, ctx, f, "", "exec", id, "--", "sh", "-c", "kill -TERM $$")
	if r.code != 143 {
		t.Errorf("signalled exec: %+v", r)
	}
	r = sbx(t, ctx, f, "", "exec", "nope", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("exec in unknown sandbox: %+v", r)
	}

	// An interrupt sends SIGTERM to the remote process and exits 130.
	ictx, cancel := context.WithCancel(ctx)
	time.AfterFunc(500*time.Millisecond, cancel)
	start := time.Now()
	r = sbx(t, ictx, f, "", "exec", "--no-login", id, "--", "sleep", "30")
	if r.code != 130 || time.Since(start) > 10*time.Second {
		t.Errorf("interrupted exec: %+v after %v", r, time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := sbx(t, ctx, f, "", "exec", "--no-login", id, "--", "pgrep", "-f", "^sleep 30$")
		if res.code == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote sleep still running after interrupt: %+v", res)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunKillsSandbox(t *testing.T) {
	f := fakesbx.New(t)
	r := sbx(t, context.Background(), f, "", "run", "--timeout", "1m", "--", "sh", "-c", "echo hi; exit 5")
	if r.code != 5 || r.stdout != "hi\n" {
		t.Errorf("run: %+v", r)
	}
	if len(f.Sandboxes) != 0 {
		t.Errorf("run left %d sandboxes", len(f.Sandboxes))
	}
	if req, ok := f.Last("/v2/sandboxes"); !ok || !strings.Contains(req.Body, `"timeout":60`) {
		t.Errorf("create body %q", req.Body)
	}
	r = sbx(t, context.Background(), f, "", "run", "--template", "nope", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "template nope not found") {
		t.Errorf("run with unknown template: %+v", r)
	}
}

func TestShellWithoutTerminal(t *testing.T) {
	f := fakesbx.New(t)
	ctx := context.Background()
	id := strings.TrimSpace(sbx(t, ctx, f, "", "create").stdout)
	r := sbx(t, ctx, f, "echo from-shell\nexit 4\n", "shell", "--user", "root", id)
	if r.code != 4 || !strings.Contains(r.stdout, "from-shell") {
		t.Errorf("shell: %+v", r)
	}
}
