package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/units"
	"github.com/sbxdev/sbx/tests/harness"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// result is one in-process run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// sbx runs the CLI in-process against srv (nil: no server), with stdin.
func sbx(t *testing.T, ctx context.Context, srv *harness.Server, stdin string, args ...string) result {
	t.Helper()
	base, key := "", ""
	if srv != nil {
		base, key = srv.URL, srv.APIKey
	}
	return sbxAt(ctx, base, key, time.Now(), stdin, args...)
}

// sbxAt runs the CLI in-process against the server at base with key, its
// clock reading now.
func sbxAt(ctx context.Context, base, key string, now time.Time, stdin string, args ...string) result {
	var out, errb bytes.Buffer
	envs := map[string]string{}
	if base != "" {
		envs["SBX_URL"], envs["SBX_API_KEY"] = base, key
	}
	e := &env{
		ctx: ctx, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return envs[k] },
		now:    func() time.Time { return now },
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
		{[]string{"code"}, 2, "no sandbox ID"},
		{[]string{"code", "sb1"}, 2, "no code"},
		{[]string{"code", "sb1", "1+1", "2+2"}, 2, "one CODE argument"},
		{[]string{"code", "--language", "python", "--context", "c1", "sb1", "1"}, 2, "not both"},
		{[]string{"code", "sb1", "--env", "novalue", "1"}, 2, "is not K=V"},
		{[]string{"shell"}, 2, "want one sandbox ID"},
		{[]string{"kill"}, 2, "no sandbox ID"},
		{[]string{"timeout", "sb1"}, 2, "want a sandbox ID and a duration"},
		{[]string{"timeout", "sb1", "x"}, 2, "want a duration"},
		{[]string{"template"}, 2, "want ls, inspect, rm, import, set, build, tag, tags or untag"},
		{[]string{"template", "zap"}, 2, "unknown subcommand"},
		{[]string{"template", "tag"}, 2, "want a template (NAME or NAME:TAG) and at least one tag"},
		{[]string{"template", "tag", "web"}, 2, "at least one tag"},
		{[]string{"template", "tag", "web", "web:prod"}, 2, `tag "web:prod": want a bare tag`},
		{[]string{"template", "tag", "web", "prod"}, 1, "no API key"},
		{[]string{"template", "tags"}, 2, "want one template name"},
		{[]string{"template", "tags", "a", "b"}, 2, "want one template name"},
		{[]string{"template", "tags", "web:prod"}, 2, "without a tag"},
		{[]string{"template", "tags", "web"}, 1, "no API key"},
		{[]string{"template", "untag"}, 2, "want NAME:TAG"},
		{[]string{"template", "untag", "web"}, 2, `"web": want NAME:TAG`},
		{[]string{"template", "untag", "web:"}, 2, `"web:": want NAME:TAG`},
		{[]string{"template", "untag", ":prod"}, 2, `":prod": want NAME:TAG`},
		{[]string{"template", "untag", "web:prod"}, 1, "no API key"},
		{[]string{"template", "tag", "-h"}, 0, "Usage"},
		{[]string{"key", "zap"}, 2, "unknown subcommand"},
		{[]string{"key", "rm"}, 2, "no key ID"},
		{[]string{"node"}, 2, "want ls"},
		{[]string{"node", "zap"}, 2, "unknown subcommand"},
		{[]string{"node", "ls", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"node", "ls"}, 1, "no API key"},
		{[]string{"node", "rm"}, 2, "want a node name"},
		{[]string{"node", "rm", "n2"}, 1, "no API key"},
		{[]string{"node", "drain"}, 2, "want one node name"},
		{[]string{"node", "drain", "n1", "n2"}, 2, "want one node name"},
		{[]string{"node", "ready"}, 2, "want one node name"},
		{[]string{"node", "drain", "n1"}, 1, "no API key"},
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

// ctxFor is a context that ends with the test or after d.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestSandboxCommands(t *testing.T) {
	srv := harness.Start(t)
	c := srv.Client
	ctx := ctxFor(t, 3*time.Minute)
	r := sbx(t, ctx, srv, "", "create", "--timeout", "0", "--meta", "team=a", "--env", "K=V")
	if r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	id := strings.TrimSpace(r.stdout)
	info, err := c.GetSandbox(ctx, id)
	if err != nil || info.HasTimeout() || info.Metadata["team"] != "a" {
		t.Fatalf("created %+v, %v", info, err)
	}
	if r := sbx(t, ctx, srv, "", "exec", id, "--", "printenv", "K"); r.code != 0 || r.stdout != "V\n" {
		t.Fatalf("the sandbox's K: %+v", r)
	}
	r = sbx(t, ctx, srv, "", "create", "--json", "--timeout", "10m", "--runtime", "runsc")
	var created client.Sandbox
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &created) != nil || created.ID == "" || created.EnvdAccessToken == "" || created.Runtime != "runsc" {
		t.Fatalf("create --json: %+v", r)
	}
	if r := sbx(t, ctx, srv, "", "create", "--runtime", "kata"); r.code != 1 || !strings.Contains(r.stderr, `unknown runtime "kata"`) {
		t.Errorf("create --runtime kata: %+v", r)
	}
	second, err := c.GetSandbox(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := second.EndAt.Sub(second.StartedAt); d < 10*time.Minute-5*time.Second || d > 10*time.Minute+5*time.Second {
		t.Errorf("create --timeout 10m: ends %v after its start", d)
	}

	// The table at a clock 4 minutes after the second create.
	now := second.StartedAt.Add(4 * time.Minute)
	r = sbxAt(ctx, srv.URL, srv.APIKey, now, "", "ls")
	rt := fmt.Sprintf("%-9s", harness.Runtime())
	// Newest first, as the server lists them.
	want := "ID                     TEMPLATE   RUNTIME   STATE     STARTED   ENDS\n" +
		created.ID + "   base       runsc     running   4m ago    in 6m\n" +
		id + "   base       " + rt + " running   4m ago    never\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("ls:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = sbx(t, ctx, srv, "", "ls", "--meta", "team=a", "--json")
	var infos []client.SandboxInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &infos) != nil || len(infos) != 1 || infos[0].SandboxID != id || infos[0].HasTimeout() {
		t.Errorf("ls --meta --json: %+v", r)
	}

	if r = sbx(t, ctx, srv, "", "timeout", id, "90s"); r.code != 0 {
		t.Errorf("timeout: %+v", r)
	}
	if info, err := c.GetSandbox(ctx, id); err != nil || time.Until(info.EndAt) > 90*time.Second || time.Until(info.EndAt) < 60*time.Second {
		t.Errorf("after timeout 90s: %+v, %v", info, err)
	}
	r = sbx(t, ctx, srv, "", "kill", id, "nope", created.ID)
	if r.code != 1 || r.stdout != id+"\n"+created.ID+"\n" || !strings.Contains(r.stderr, `nope: sandbox "nope" not found (HTTP 404)`) {
		t.Errorf("kill: %+v", r)
	}
	if left, err := c.ListSandboxes(ctx, nil); err != nil || len(left) != 0 {
		t.Errorf("left after kill: %+v, %v", left, err)
	}
	r = sbx(t, ctx, srv, "", "--api-key", "e2b_00", "ls")
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

// writeImage writes a docker-archive of a small image (files only, it is
// inspected, never run) with an environment, user and working directory.
func writeImage(t *testing.T, archive string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, f := range []struct{ name, body string }{{"srv/", ""}, {"srv/index.html", "hello\n"}} {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: mtime, Typeflag: tar.TypeReg}
		if strings.HasSuffix(f.name, "/") {
			h.Mode, h.Typeflag = 0o755, tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Env, cfg.Config.User, cfg.Config.WorkingDir = []string{"PATH=/usr/bin", "MODE=prod"}, "app", "/srv"
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference("web:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(archive, ref, img); err != nil {
		t.Fatal(err)
	}
}

// keepTemplates keeps, of a `template ls` output (JSON or a table), the
// header and the templates named in keep: the templates directory is
// shared with other test runs.
func keepTemplates(t *testing.T, out string, keep ...string) string {
	t.Helper()
	if strings.HasPrefix(out, "[") {
		var list []json.RawMessage
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("template ls --json: %v\n%s", err, out)
		}
		var parts []string
		for _, raw := range list {
			var v struct{ TemplateID string }
			json.Unmarshal(raw, &v)
			if !slices.Contains(keep, v.TemplateID) {
				continue
			}
			var b bytes.Buffer
			json.Indent(&b, raw, "  ", "  ")
			parts = append(parts, "  "+b.String())
		}
		return "[\n" + strings.Join(parts, ",\n") + "\n]\n"
	}
	lines := strings.SplitAfter(out, "\n")
	kept := lines[:1]
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 && slices.Contains(keep, f[0]) {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "")
}

// normalize replaces what differs per run and per machine in out: the
// values of the given JSON fields and the given strings (in pairs, old
// and new, as strings.NewReplacer takes them).
func normalize(out string, fields []string, repl ...string) string {
	for _, f := range fields {
		re := regexp.MustCompile(`("` + f + `": )("[^"]*"|[0-9.]+)`)
		out = re.ReplaceAllString(out, `$1"<`+f+`>"`)
	}
	return strings.NewReplacer(repl...).Replace(out)
}

// unalign collapses the runs of spaces that align a table's columns: the
// widths of values that differ per machine would move them.
func unalign(out string) string {
	return regexp.MustCompile(`  +`).ReplaceAllString(out, "   ")
}

func TestKeyAndTemplateCommands(t *testing.T) {
	srv := harness.Start(t)
	c := srv.Client
	ctx := ctxFor(t, 3*time.Minute)
	keys, err := c.ListKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys: %+v, %v", keys, err)
	}
	admin := keys[0]

	// A template of this test's own, from a small image: the templates
	// directory is shared with other runs.
	archive := filepath.Join(t.TempDir(), "web.tar")
	writeImage(t, archive)
	web := fmt.Sprintf("cli-web-%d", os.Getpid())
	r := sbx(t, ctx, srv, "", "template", "import", web, "--tar", archive, "--start-cmd", "python3 -m http.server 8000", "--ready-port", "8000", "--ready-timeout", "30", "--memory-mb", "512")
	if r.code != 0 {
		t.Fatalf("template import: %+v", r)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.DeleteTemplate(ctx, web); err != nil && !client.IsNotFound(err) {
			t.Errorf("delete template %s: %v", web, err)
		}
	})
	base, err := c.InspectTemplate(ctx, "base")
	if err != nil {
		t.Fatal(err)
	}
	wd, err := c.InspectTemplate(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	// Times shown relative to the clock: an hour after each was made.
	keyNow, baseNow, webNow := admin.CreatedAt.Add(time.Hour), base.CreatedAt.Add(time.Hour), wd.CreatedAt.Add(time.Hour)

	for _, tc := range []struct {
		golden string
		now    time.Time
		args   []string
	}{
		{"key-ls.json", keyNow, []string{"key", "ls", "--json"}},
		{"key-ls.txt", keyNow, []string{"key", "ls"}},
		{"key-create.json", keyNow, []string{"key", "create", "--name", "ci", "--json"}},
		{"template-ls.json", baseNow, []string{"template", "ls", "--json"}},
		{"template-ls.txt", baseNow, []string{"template", "ls"}},
		{"template-inspect.json", webNow, []string{"template", "inspect", web, "--json"}},
		{"template-inspect.txt", webNow, []string{"template", "inspect", web}},
	} {
		r := sbxAt(ctx, srv.URL, srv.APIKey, tc.now, "", tc.args...)
		if r.code != 0 {
			t.Errorf("%v: %+v", tc.args, r)
			continue
		}
		out := r.stdout
		// Placeholders of the values' own widths keep tables aligned.
		idRepl := []string{admin.ID, "key_" + strings.Repeat("0", len(admin.ID)-len("key_")), admin.Prefix, "e2b_" + strings.Repeat("0", len(admin.Prefix)-len("e2b_"))}
		switch tc.golden {
		case "key-ls.json":
			out = normalize(out, []string{"createdAt"}, idRepl...)
		case "key-ls.txt":
			out = normalize(out, nil, idRepl...)
		case "key-create.json":
			out = normalize(out, []string{"id", "key", "createdAt"})
		case "template-ls.json":
			out = normalize(keepTemplates(t, out, "base"), []string{"sizeBytes", "diskSizeMB", "createdAt"})
		case "template-ls.txt":
			out = unalign(normalize(keepTemplates(t, out, "base"), nil, units.Bytes(base.SizeBytes, units.Short), "<size>"))
		case "template-inspect.json":
			out = normalize(out, []string{"templateID", "createdAt", "source", "diskBytes"})
		case "template-inspect.txt":
			out = normalize(out, nil, web+"\n", "web\n", archive, "<archive>", units.Bytes(wd.DiskBytes, units.Short)+" on disk", "<disk> on disk",
				wd.CreatedAt.UTC().Format("2006-01-02 15:04:05 MST"), "<created>")
		}
		golden(t, tc.golden, out)
	}
	r = sbx(t, ctx, srv, "", "key", "create", "--name", "ci")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "e2b_") || !strings.Contains(r.stderr, "not shown again") {
		t.Errorf("key create: %+v", r)
	}
	keys, err = c.ListKeys(ctx)
	if err != nil || len(keys) != 3 {
		t.Fatalf("keys: %+v, %v", keys, err)
	}
	for _, k := range keys {
		if k.ID == admin.ID {
			continue
		}
		if r := sbx(t, ctx, srv, "", "key", "rm", k.ID); r.code != 0 {
			t.Errorf("key rm: %+v", r)
		}
	}
	if keys, err := c.ListKeys(ctx); err != nil || len(keys) != 1 {
		t.Errorf("keys after key rm: %+v, %v", keys, err)
	}

	// Removing a template that a sandbox uses is refused. The base
	// template is shared: the sandbox must be there first.
	if r := sbx(t, ctx, srv, "", "create"); r.code != 0 {
		t.Fatal(r)
	}
	if list, err := c.ListSandboxes(ctx, nil); err != nil || len(list) != 1 || list[0].TemplateID != "base" {
		t.Fatalf("sandboxes: %+v, %v", list, err)
	}
	r = sbx(t, ctx, srv, "", "template", "rm", "base")
	if r.code != 1 || !strings.Contains(r.stderr, `template "base" is used by 1 sandbox(es) (HTTP 409)`) {
		t.Errorf("template rm in use: %+v", r)
	}

	// template set changes only what its flags give.
	r = sbx(t, ctx, srv, "", "template", "set", web, "--start-cmd", "", "--ready-cmd", "curl -sf localhost:8000", "--cpus", "2", "--env", "A=1")
	if r.code != 0 || !strings.Contains(r.stdout, "Ready check") {
		t.Fatalf("template set: %+v", r)
	}
	after, err := c.InspectTemplate(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.StartCmd) != 0 || after.ReadyCmd != "curl -sf localhost:8000" || after.CPUCount != 2 || !after.CPUCountSet ||
		!slices.Equal(after.Env, []string{"A=1"}) {
		t.Errorf("after template set: %+v", after)
	}
	if after.ReadyPort != wd.ReadyPort || after.ReadyTimeout != wd.ReadyTimeout || after.Workdir != wd.Workdir ||
		after.User != wd.User || after.MemoryMB != wd.MemoryMB || !after.MemoryMBSet {
		t.Errorf("template set changed what it was not given: %+v, was %+v", after, wd)
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
		if r := sbx(t, ctx, srv, "", tc.args...); r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %+v, want usage error %q", tc.args, r, tc.want)
		}
	}
	if r := sbx(t, ctx, srv, "", "template", "inspect", "nope"); r.code != 1 || !strings.Contains(r.stderr, `template "nope" not found (HTTP 404)`) {
		t.Errorf("template inspect of a missing template: %+v", r)
	}
	if r := sbx(t, ctx, srv, "", "template", "rm", web); r.code != 0 {
		t.Errorf("template rm: %+v", r)
	}
	if _, err := c.InspectTemplate(ctx, web); !client.IsNotFound(err) {
		t.Errorf("inspect after template rm: %v", err)
	}
}

func TestExec(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	id := strings.TrimSpace(sbx(t, ctx, srv, "", "create").stdout)

	r := sbx(t, ctx, srv, "", "exec", "--env", "FOO=bar", id, "--", "sh", "-c", "echo out $FOO; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "out bar\n" || r.stderr != "err\n" {
		t.Errorf("exec: %+v", r)
	}
	r = sbx(t, ctx, srv, "piped\n", "exec", "-i", "--user", "root", "--no-login", id, "cat")
	if r.code != 0 || r.stdout != "piped\n" {
		t.Errorf("exec -i: %+v", r)
	}
	if r := sbx(t, ctx, srv, "", "exec", "--user", "root", "--no-login", id, "--", "id", "-un"); r.code != 0 || r.stdout != "root\n" {
		t.Errorf("exec --user root: %+v", r)
	}
	r = sbx(t, ctx, srv, "ignored", "exec", id, "--", "cat")
	if r.code != 0 || r.stdout != "" {
		t.Errorf("exec without -i read stdin: %+v", r)
	}
	r = sbx(t, ctx, srv, "", "exec", id, "--", "sh", "-c", "kill -TERM $$")
	if r.code != 143 {
		t.Errorf("signalled exec: %+v", r)
	}
	r = sbx(t, ctx, srv, "", "exec", "nope", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("exec in unknown sandbox: %+v", r)
	}

	// An interrupt sends SIGTERM to the remote process and exits 130.
	ictx, cancel := context.WithCancel(ctx)
	time.AfterFunc(500*time.Millisecond, cancel)
	start := time.Now()
	r = sbx(t, ictx, srv, "", "exec", "--no-login", id, "--", "sleep", "30")
	if r.code != 130 || time.Since(start) > 10*time.Second {
		t.Errorf("interrupted exec: %+v after %v", r, time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := sbx(t, ctx, srv, "", "exec", "--no-login", id, "--", "pgrep", "-f", "^sleep 30$")
		if res.code == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote sleep still running after interrupt: %+v", res)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recorder is a reverse proxy to a real server that records the bodies
// of the control-plane requests the CLI sends (the data plane's streams
// pass through as they are).
type recorder struct {
	URL    string
	mu     sync.Mutex
	bodies map[string][]string // by method and path
}

func newRecorder(t *testing.T, target string) *recorder {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{bodies: map[string][]string{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("E2b-Sandbox-Id") == "" && r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			rec.mu.Lock()
			rec.bodies[r.Method+" "+r.URL.Path] = append(rec.bodies[r.Method+" "+r.URL.Path], string(b))
			rec.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

// last returns the last body sent to method and path.
func (r *recorder) last(method, path string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bodies[method+" "+path]
	if len(b) == 0 {
		return ""
	}
	return b[len(b)-1]
}

func TestRunKillsSandbox(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	rec := newRecorder(t, srv.URL)
	r := sbxAt(ctx, rec.URL, srv.APIKey, time.Now(), "", "run", "--timeout", "1m", "--", "sh", "-c", "echo hi; exit 5")
	if r.code != 5 || r.stdout != "hi\n" {
		t.Errorf("run: %+v", r)
	}
	if left, err := srv.Client.ListSandboxes(ctx, nil); err != nil || len(left) != 0 {
		t.Errorf("run left %+v, %v", left, err)
	}
	if body := rec.last("POST", "/v2/sandboxes"); !strings.Contains(body, `"timeout":60`) {
		t.Errorf("create body %q", body)
	}
	r = sbx(t, ctx, srv, "", "run", "--template", "nope", "true")
	if r.code != 1 || !strings.Contains(r.stderr, `template "nope" not found`) {
		t.Errorf("run with unknown template: %+v", r)
	}
}

func TestShellWithoutTerminal(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	id := strings.TrimSpace(sbx(t, ctx, srv, "", "create").stdout)
	r := sbx(t, ctx, srv, "echo from-shell\nexit 4\n", "shell", "--user", "root", id)
	if r.code != 4 || !strings.Contains(r.stdout, "from-shell") {
		t.Errorf("shell: %+v", r)
	}
}
