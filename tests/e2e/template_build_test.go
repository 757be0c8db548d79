package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// buildDockerfile installs a package from a local apt repository that
// the build context carries (sandboxes have no network), copies a file
// with --chown, deletes a file of the base template (a whiteout in the
// layer) and replaces a directory of it (an opaque directory).
const buildDockerfile = `# sbx e2e: template build
FROM base
ARG GREETING=hi
ENV GREETING=${GREETING} \
    APP_HOME=/opt/app

COPY repo /opt/repo
# Only the local repository: the sandbox has no network.
RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* \
 && echo "deb [trusted=yes] file:/opt/repo ./" > /etc/apt/sources.list.d/local.list \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y sbx-hello
COPY --chown=user:user hello.txt $APP_HOME/
WORKDIR $APP_HOME
RUN ["/bin/sh", "-c", "echo \"$GREETING\" > greeting.txt && rm -rf /usr/share/doc/git && mkdir /usr/share/doc/git && echo new > /usr/share/doc/git/only"]
USER user
CMD ["sleep", "infinity"]
`

// writeBuildContext makes a build context: the Dockerfile, hello.txt, and
// repo/, a flat apt repository holding one tiny package (sbx-hello, which
// installs /usr/bin/sbx-hello) built here with dpkg-deb.
func writeBuildContext(t *testing.T, dockerfile string) string {
	t.Helper()
	dir := t.TempDir()
	pkg := filepath.Join(t.TempDir(), "pkg")
	for _, d := range []string{"DEBIAN", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(pkg, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(pkg, "DEBIAN/control"), "Package: sbx-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: sbx tests <tests@sbx.invalid>\nDescription: says hello\n", 0o644)
	write(filepath.Join(pkg, "usr/bin/sbx-hello"), "#!/bin/sh\necho hello from a deb\n", 0o755)
	repo := filepath.Join(dir, "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(dir string, name string, args ...string) []byte {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("%s %q: %v\n%s", name, args, err, ee.Stderr)
			}
			t.Fatalf("%s: %v (scripts/setup.sh installs dpkg-dev)", name, err)
		}
		return out
	}
	run(dir, "dpkg-deb", "--root-owner-group", "--build", pkg, filepath.Join(repo, "sbx-hello_1.0_all.deb"))
	write(filepath.Join(repo, "Packages"), string(run(repo, "dpkg-scanpackages", "--multiversion", ".", "/dev/null")), 0o644)
	write(filepath.Join(dir, "hello.txt"), "copied from the build context\n", 0o644)
	write(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644)
	write(filepath.Join(dir, ".dockerignore"), "secret.txt\n", 0o644)
	write(filepath.Join(dir, "secret.txt"), "not for the server\n", 0o644)
	return dir
}

// TestTemplateBuild builds a template from a Dockerfile with the CLI
// (checking its progress output), checks a sandbox made from it, and
// builds it again with the Go SDK: every step comes from the cache.
func TestTemplateBuild(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 10*time.Minute)
	c := srv.Client
	ctxDir := writeBuildContext(t, buildDockerfile)
	name := fmt.Sprintf("e2e-build-%d", os.Getpid())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.DeleteTemplate(ctx, name); err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Errorf("delete template %s: %v", name, err)
		}
	})

	// --no-cache: the shared template directory may hold these layers
	// from an earlier run.
	stdout, stderr, code := srv.CLI(ctx, nil, "template", "build", "--name", name, "--build-arg", "GREETING=hey there", "--no-cache", ctxDir)
	if code != 0 {
		t.Fatalf("sbx template build: exit %d\nstdout: %s\nstderr: %s\n%s", code, stdout, stderr, srv.Logs())
	}
	if strings.TrimSpace(stdout) != name {
		t.Errorf("stdout = %q, want the template's name", stdout)
	}
	for _, want := range []string{
		"Step 1/10 : FROM base",
		"Step 5/10 : RUN rm -f /etc/apt/sources.list",
		"Setting up sbx-hello (1.0)", // apt's output, streamed
		"Step 10/10 : CMD",
		"Built template " + name,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("progress output lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "CACHED") {
		t.Errorf("a --no-cache build reused layers:\n%s", stderr)
	}
	logSummary := func(what string, lines []string) {
		for _, l := range lines {
			if strings.HasPrefix(l, "Built template") {
				t.Logf("%s: %s", what, l)
			}
		}
	}
	logSummary("first build (CLI, --no-cache)", strings.Split(stderr, "\n"))

	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: name})
	if err != nil {
		t.Fatalf("create a sandbox from %s: %v", name, err)
	}
	defer sb.Kill(context.WithoutCancel(ctx))
	for _, tc := range []struct{ cmd, want string }{
		{"sbx-hello", "hello from a deb\n"},                                      // apt installed the package
		{"dpkg-query -W -f='${Status}' sbx-hello", "install ok installed"},       // and dpkg knows it
		{"cat /opt/app/hello.txt", "copied from the build context\n"},            // COPY
		{"stat -c %U:%G /opt/app/hello.txt", "user:user\n"},                      // --chown
		{"cat /opt/app/greeting.txt", "hey there\n"},                             // ARG, ENV, WORKDIR, exec form
		{"test -e /etc/apt/sources.list && echo present || echo gone", "gone\n"}, // a whiteout
		{"ls -A /usr/share/doc/git", "only\n"},                                   // an opaque directory
		{"test -d /usr/share/doc/bash && echo kept", "kept\n"},                   // the rest of the base
		{"whoami", "user\n"}, // USER
		{"echo \"$GREETING|$APP_HOME\"", "hey there|/opt/app\n"}, // ENV, in the template
		{"pwd", "/opt/app\n"}, // WORKDIR, in the template
		{"pgrep -x sleep >/dev/null && echo started", "started\n"}, // CMD, the start command
	} {
		res := mustRun(t, ctx, sb, tc.cmd, nil)
		if res.ExitCode != 0 || res.Stdout != tc.want {
			t.Errorf("%s: exit %d, stdout %q (want %q), stderr %q", tc.cmd, res.ExitCode, res.Stdout, tc.want, res.Stderr)
		}
	}
	sb.Kill(ctx)

	ts, err := c.ListTemplates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tpl := range ts {
		found = found || tpl.TemplateID == name && tpl.BuildStatus == "ready" && tpl.SizeBytes > 0
	}
	if !found {
		t.Errorf("template %s not listed as ready: %+v", name, ts)
	}
	d, err := c.InspectTemplate(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	// Four steps changed files: four layers over base's rootfs.
	if len(d.BuildLayers) != 4 || d.Base != "base" || d.User != "user" || d.Workdir != "/opt/app" || strings.Join(d.StartCmd, " ") != "sleep infinity" || d.DiskBytes == 0 {
		t.Errorf("inspect %s: %+v", name, d)
	}
	// .dockerignore keeps files out of the context sent.
	if _, err := c.StartTemplateBuild(ctx, client.BuildOptions{Name: name + "-ign", ContextDir: ctxDir, Dockerfile: "FROM base\nCOPY secret.txt /x\n"}); !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("COPY of a .dockerignore'd file: %v", err)
	}
	// The base template cannot go while the built one stands on it.
	if err := c.DeleteTemplate(ctx, "base"); !errors.Is(err, client.ErrConflict) {
		t.Errorf("delete base under a built template: %v", err)
	}

	// The same build again, with the SDK: nothing runs.
	var events []client.BuildEvent
	b, err := c.BuildTemplate(ctx, client.BuildOptions{Name: name, ContextDir: ctxDir, BuildArgs: map[string]string{"GREETING": "hey there"}}, func(e client.BuildEvent) { events = append(events, e) })
	if err != nil {
		t.Fatalf("second build: %v", err)
	}
	if b.Status != client.BuildReady || b.TemplateID != name {
		t.Errorf("second build: %+v", b)
	}
	cached := map[int]bool{}
	for _, e := range events {
		switch e.Kind {
		case "cached":
			cached[e.Step] = true
		case "output":
			t.Errorf("second build ran a step: step %d printed %q", e.Step, e.Message)
		}
	}
	for _, step := range []int{4, 5, 6, 8} { // COPY, RUN, COPY, RUN
		if !cached[step] {
			t.Errorf("step %d was not CACHED in the second build; events: %+v", step, events)
		}
	}
	if last := events[len(events)-1]; last.Kind != "end" || last.Status != client.BuildReady {
		t.Errorf("last log line: %+v", last)
	}
	messages := func() []string {
		var m []string
		for _, e := range events {
			m = append(m, e.Message)
		}
		return m
	}
	logSummary("second build (SDK, cached)", messages())

	// A changed file in the context invalidates its COPY and what follows.
	if err := os.WriteFile(filepath.Join(ctxDir, "hello.txt"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	events = nil
	if _, err := c.BuildTemplate(ctx, client.BuildOptions{Name: name, ContextDir: ctxDir, BuildArgs: map[string]string{"GREETING": "hey there"}}, func(e client.BuildEvent) { events = append(events, e) }); err != nil {
		t.Fatalf("third build: %v", err)
	}
	logSummary("third build (SDK, hello.txt changed)", messages())
	cached = map[int]bool{}
	for _, e := range events {
		if e.Kind == "cached" {
			cached[e.Step] = true
		}
	}
	if !cached[4] || !cached[5] || cached[6] || cached[8] {
		t.Errorf("after changing hello.txt, cached steps %v, want 4 and 5 only", cached)
	}
	sb, err = c.CreateSandbox(ctx, client.CreateOptions{Template: name})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Kill(context.WithoutCancel(ctx))
	if res := mustRun(t, ctx, sb, "cat /opt/app/hello.txt; sbx-hello", nil); res.Stdout != "changed\nhello from a deb\n" {
		t.Errorf("rebuilt template: %q %q", res.Stdout, res.Stderr)
	}
}

// TestTemplateBuildBadInput checks that builds that cannot work fail
// clearly, before or while running, and leave nothing behind.
func TestTemplateBuildBadInput(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	name := fmt.Sprintf("e2e-bad-%d", os.Getpid())

	for _, tc := range []struct {
		dockerfile string
		want       string
	}{
		{"FROM base\nFROBNICATE now\n", `line 2: unknown instruction "FROBNICATE"`},
		{"FROM base\nCOPY ../secret /x\n", "outside the build context"},
		{"FROM base\nCOPY missing.txt /x\n", "no such file in the build context"},
		{"FROM base\nADD https://example.com/x /x\n", "remote URLs are not supported"},
		{"FROM base\nFROM base\n", "multi-stage builds are not supported"},
		{"RUN true\n", "before FROM"},
		{"FROM no-such-template-here\n", "needs an admin API key"}, // an image: plain keys may not fetch
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("x"), 0o644)
		if tc.want == "needs an admin API key" {
			plain, err := c.CreateKey(ctx, "plain")
			if err != nil {
				t.Fatal(err)
			}
			_, err = client.New(srv.URL, plain.Key).StartTemplateBuild(ctx, client.BuildOptions{Name: name, ContextDir: dir, Dockerfile: tc.dockerfile})
			if !errors.Is(err, client.ErrPermissionDenied) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q: %v, want permission denied with %q", tc.dockerfile, err, tc.want)
			}
			continue
		}
		_, err := c.StartTemplateBuild(ctx, client.BuildOptions{Name: name, ContextDir: dir, Dockerfile: tc.dockerfile})
		if !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want invalid argument with %q", tc.dockerfile, err, tc.want)
		}
		// The CLI says the same and exits 1.
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(tc.dockerfile), 0o644)
		_, stderr, code := srv.CLI(ctx, nil, "template", "build", "--name", name, dir)
		if code != 1 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "HTTP 400") {
			t.Errorf("CLI, %q: exit %d, stderr %q", tc.dockerfile, code, stderr)
		}
	}

	// A failing RUN fails the build with its exit code and output; the
	// template does not appear.
	dir := t.TempDir()
	var events []client.BuildEvent
	b, err := c.BuildTemplate(ctx, client.BuildOptions{Name: name, ContextDir: dir, Dockerfile: "FROM base\nRUN echo before > /tmp/x\nRUN echo oops-$((6*7)) >&2; exit 3\nRUN echo never\n"}, func(e client.BuildEvent) { events = append(events, e) })
	var be *client.BuildError
	if !errors.As(err, &be) || b.Status != client.BuildFailed || b.ExitCode != 3 || b.Step != 3 || !strings.Contains(b.Error, "exit code 3") {
		t.Fatalf("failing RUN: err %v, build %+v", err, b)
	}
	var out []string
	for _, e := range events {
		if e.Kind == "output" {
			out = append(out, e.Message)
		}
	}
	if strings.Join(out, "\n") != "oops-42" {
		t.Errorf("output of the failing build: %q, want the failing RUN's", out)
	}
	if _, err := c.GetTemplateBuild(ctx, b.BuildID); err != nil {
		t.Errorf("get failed build: %v", err)
	}
	ts, _ := c.ListTemplates(ctx)
	for _, tpl := range ts {
		if tpl.TemplateID == name {
			t.Errorf("a failed build left template %s", name)
		}
	}
	if list, _ := c.ListSandboxes(ctx, nil); len(list) != 0 {
		t.Errorf("a failed build left sandboxes: %+v", list)
	}
	// Steps the Dockerfile gets wrong while they run: a clear message.
	for _, tc := range []struct {
		dockerfile, want string
		step             int
	}{
		{"FROM base\nUSER nosuchuser\nRUN true\n", `nosuchuser`, 3},
		{"FROM base\nRUN [\"/no/such/program\"]\n", `/no/such/program`, 2},
		{"FROM base\nCOPY hello.txt /etc/passwd/x\n", `COPY`, 2},
	} {
		os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("x"), 0o644)
		_, err := c.BuildTemplate(ctx, client.BuildOptions{Name: name, ContextDir: dir, Dockerfile: tc.dockerfile}, nil)
		var be *client.BuildError
		if !errors.As(err, &be) || be.Build.Step != tc.step || !strings.Contains(be.Build.Error, tc.want) || strings.Contains(be.Build.Error, "internal error") {
			t.Errorf("%q: %v, want a failed step %d naming %q", tc.dockerfile, err, tc.step, tc.want)
		}
	}

	// The CLI: exit 1, the RUN's output on stderr as it came.
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM base\nRUN echo cli-oops; exit 7\n"), 0o644)
	_, stderr, code := srv.CLI(ctx, nil, "template", "build", "--name", name, dir)
	if code != 1 || !strings.Contains(stderr, "cli-oops") || !strings.Contains(stderr, "exit code 7") {
		t.Errorf("CLI, failing RUN: exit %d, stderr %q", code, stderr)
	}

	// Contexts whose entries escape: refused, nothing written outside.
	marker := fmt.Sprintf("sbx-escape-%d", os.Getpid())
	for _, entries := range [][]tar.Header{
		{{Name: "../../" + marker, Typeflag: tar.TypeReg, Mode: 0o644}},
		{{Name: "/tmp/" + marker, Typeflag: tar.TypeReg, Mode: 0o644}},
		{{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, {Name: "link/" + marker, Typeflag: tar.TypeReg, Mode: 0o644}},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "Dockerfile", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len("FROM base\n"))})
		tw.Write([]byte("FROM base\n"))
		for _, h := range entries {
			h.Size = int64(len("escaped"))
			if h.Typeflag == tar.TypeSymlink {
				h.Size = 0
			}
			tw.WriteHeader(&h)
			if h.Size > 0 {
				tw.Write([]byte("escaped"))
			}
		}
		tw.Close()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/sbx/v1/templates/builds?name="+name, &buf)
		req.Header.Set("X-API-Key", srv.APIKey)
		req.Header.Set("Content-Type", "application/x-tar")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := new(bytes.Buffer)
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(body.String(), `"code":400`) {
			t.Errorf("context with %s: %d %s", entries[len(entries)-1].Name, resp.StatusCode, body)
		}
	}
	for _, root := range []string{"/tmp", srv.DataDir} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == marker {
				t.Errorf("an escaping context entry was written: %s", p)
			}
			if err != nil && d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		})
	}
}

// TestTemplateBuildFromImage builds FROM an image in a registry (an
// in-process one on loopback) with an ADD of a local tarball, which is
// unpacked, and checks the result with the image's own cat (the image has
// no shell, so no RUN). A tarball with an entry escaping its destination
// fails the build.
func TestTemplateBuildFromImage(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	archive := filepath.Join(t.TempDir(), "img.tar")
	writeCatImage(t, filepath.Join(harness.TemplatesDir(), "base", "rootfs"), archive)
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(reg.URL, "http://") + "/cat:v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}

	dir := t.TempDir()
	tarGz := func(path string, entries map[string]string) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for n, body := range entries {
			tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), Uid: 1234, Gid: 1234})
			tw.Write([]byte(body))
		}
		tw.Close()
		zw.Close()
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tarGz(filepath.Join(dir, "data.tar.gz"), map[string]string{"sub/a.txt": "from a tarball\n"})
	tarGz(filepath.Join(dir, "evil.tar.gz"), map[string]string{"../../../escaped.txt": "escaped\n"})
	os.WriteFile(filepath.Join(dir, "note.txt"), []byte("a note\n"), 0o644)
	tpl := fmt.Sprintf("e2e-fromimg-%d", os.Getpid())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.DeleteTemplate(ctx, tpl); err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Errorf("delete template %s: %v", tpl, err)
		}
	})
	var events []string
	_, err = c.BuildTemplate(ctx, client.BuildOptions{Name: tpl, ContextDir: dir, Dockerfile: "FROM " + ref + "\nADD data.tar.gz /srv/\nCOPY note.txt data.tar.gz /srv/copied/\nCMD []\n"}, func(e client.BuildEvent) { events = append(events, e.Message) })
	if err != nil {
		t.Fatalf("build FROM %s: %v\n%s\n%s", ref, err, strings.Join(events, "\n"), srv.Logs())
	}
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tpl})
	if err != nil {
		t.Fatalf("create from %s: %v", tpl, err)
	}
	defer sb.Kill(context.WithoutCancel(ctx))
	var out bytes.Buffer
	code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "/usr/bin/cat", Args: []string{"/etc/motd-sbx", "/srv/sub/a.txt", "/srv/copied/note.txt"}, User: "root", Stdout: &out, Stderr: &out})
	if err != nil || code != 0 || out.String() != "imported\nfrom a tarball\na note\n" {
		t.Errorf("cat in the built template: code %d, err %v, output %q", code, err, out.String())
	}
	// COPY does not unpack: the archive arrives as it is (gzip magic).
	out.Reset()
	code, err = sb.Exec(ctx, client.ExecOptions{Cmd: "/usr/bin/cat", Args: []string{"/srv/copied/data.tar.gz"}, User: "root", Stdout: &out})
	if err != nil || code != 0 || !bytes.HasPrefix(out.Bytes(), []byte{0x1f, 0x8b}) {
		t.Errorf("COPY of a tarball: code %d, err %v, %d bytes", code, err, out.Len())
	}

	// An archive entry leaving the destination fails the build.
	_, err = c.BuildTemplate(ctx, client.BuildOptions{Name: tpl + "-evil", ContextDir: dir, Dockerfile: "FROM " + ref + "\nADD evil.tar.gz /srv/\n"}, nil)
	var be *client.BuildError
	if !errors.As(err, &be) || be.Build.Step != 2 || !strings.Contains(be.Build.Error, `".."`) {
		t.Errorf("ADD of an escaping tarball: %v", err)
	}
	filepath.WalkDir(srv.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "escaped.txt" {
			t.Errorf("an escaping ADD entry was written: %s", p)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(harness.TemplatesDir(), "escaped.txt")); err == nil {
		t.Errorf("an escaping ADD entry was written into the templates directory")
	}
}
