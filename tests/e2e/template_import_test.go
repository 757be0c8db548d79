package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestTemplateImport imports a tiny image (the base template's cat, the
// libraries it loads, /etc/passwd and a marker file) from a docker-archive
// with the CLI, then runs cat in a sandbox made from it with the SDK.
func TestTemplateImport(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client

	archive := filepath.Join(t.TempDir(), "img.tar")
	writeCatImage(t, filepath.Join(harness.TemplatesDir(), "base", "rootfs"), archive)

	// The templates directory is shared between test runs: a name of our
	// own, removed afterwards.
	tmpl := fmt.Sprintf("e2e-import-%d", os.Getpid())
	out := cliOK(t, ctx, srv, "template", "import", tmpl, "--tar", archive, "--json")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.DeleteTemplate(ctx, tmpl); err != nil {
			t.Errorf("delete template %s: %v", tmpl, err)
		}
	})
	var got client.Template
	decodeStrict(t, out, &got)
	if got.TemplateID != tmpl || got.BuildStatus != "ready" || got.SizeBytes == 0 {
		t.Fatalf("sbx template import --json: %s", out)
	}

	_, err := c.ImportTemplate(ctx, client.ImportOptions{Name: tmpl, Source: client.ImportTarball, Path: archive})
	if !errors.Is(err, client.ErrConflict) {
		t.Errorf("second import: %v, want a conflict", err)
	}
	_, err = c.ImportTemplate(ctx, client.ImportOptions{Name: tmpl + "-x", Source: client.ImportTarball, Path: archive + ".missing"})
	if !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("import of a missing file: %v, want invalid argument", err)
	}

	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
	if err != nil {
		t.Fatalf("create sandbox from %s: %v\n%s", tmpl, err, srv.Logs())
	}
	defer sb.Kill(context.WithoutCancel(ctx))
	var stdout, stderr bytes.Buffer
	code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "/usr/bin/cat", Args: []string{"/etc/motd-sbx"}, User: "root", Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 0 || stdout.String() != "imported\n" {
		t.Fatalf("cat /etc/motd-sbx: code %d, err %v, stdout %q, stderr %q", code, err, stdout.String(), stderr.String())
	}
}

// writeCatImage writes a docker-archive of a one-layer image holding
// rootfs's /usr/bin/cat with its dynamic loader and libraries, /etc/passwd,
// /etc/group and /etc/motd-sbx.
func writeCatImage(t *testing.T, rootfs, archive string) {
	t.Helper()
	writeImage(t, rootfs, archive, imageSpec{
		bins:   []string{"usr/bin/cat"},
		files:  map[string]string{"etc/motd-sbx": "imported\n"},
		config: v1.Config{Env: []string{"PATH=/usr/bin"}, Cmd: []string{"/usr/bin/cat"}},
	})
}

// imageSpec is what writeImage puts into an image besides /etc/passwd and
// /etc/group: dynamically linked binaries of the rootfs (with their loader
// and libraries), static files of the host, small files, symlinks,
// directories and the image config.
type imageSpec struct {
	bins     []string          // rootfs-relative, e.g. usr/bin/cat
	static   map[string]string // image path -> host path
	files    map[string]string // image path -> content
	symlinks map[string]string // image path -> target
	dirs     []string          // extra directories (0755)
	config   v1.Config
}

// writeImage writes a docker-archive of a one-layer image made as spec
// says. It reads each file at its real location in the rootfs (bookworm's
// merged /usr), never through the rootfs's absolute symlinks, which would
// lead to the host's files.
func writeImage(t *testing.T, rootfs, archive string, spec imageSpec) {
	t.Helper()
	const libDir = "usr/lib/x86_64-linux-gnu"
	libs := map[string]bool{}
	var interp string
	for _, bin := range spec.bins {
		f, err := elf.Open(filepath.Join(rootfs, bin))
		if err != nil {
			t.Fatal(err)
		}
		ls, err := f.ImportedLibraries()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			libs[l] = true
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				b, _ := io.ReadAll(p.Open())
				interp = string(bytes.TrimRight(b, "\x00"))
			}
		}
		f.Close()
	}
	if interp == "" {
		t.Fatal("no ELF interpreter among the binaries")
	}
	libs[path.Base(interp)] = true

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(hdr tar.Header, body []byte) {
		hdr.Size = int64(len(body))
		hdr.ModTime = time.Now()
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(rootfs, p))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, d := range append([]string{"usr/", "usr/bin/", "usr/lib/", libDir + "/", "etc/"}, spec.dirs...) {
		add(tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}, nil)
	}
	// A /tmp anyone may write to, as on any system.
	add(tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}, nil)
	add(tar.Header{Typeflag: tar.TypeSymlink, Name: "lib", Linkname: "usr/lib"}, nil)
	add(tar.Header{Typeflag: tar.TypeSymlink, Name: "bin", Linkname: "usr/bin"}, nil)
	add(tar.Header{Typeflag: tar.TypeDir, Name: "lib64/", Mode: 0o755}, nil)
	for _, bin := range spec.bins {
		add(tar.Header{Typeflag: tar.TypeReg, Name: bin, Mode: 0o755}, read(bin))
	}
	for l := range libs {
		add(tar.Header{Typeflag: tar.TypeReg, Name: libDir + "/" + l, Mode: 0o755}, read(libDir+"/"+l))
	}
	add(tar.Header{Typeflag: tar.TypeSymlink, Name: "lib64/" + path.Base(interp), Linkname: "/" + libDir + "/" + path.Base(interp)}, nil)
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644}, read("etc/passwd"))
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/group", Mode: 0o644}, read("etc/group"))
	for name, hostPath := range spec.static {
		b, err := os.ReadFile(hostPath)
		if err != nil {
			t.Fatal(err)
		}
		add(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755}, b)
	}
	for name, body := range spec.files {
		add(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, []byte(body))
	}
	for name, target := range spec.symlinks {
		add(tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}, nil)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, spec.config)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("sbx.test/img:e2e")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
}

// TestTemplateImportLayout imports an OCI image layout directory with the
// CLI (--oci-layout), checks inspect's record of it (source, layers, start
// command from the image), and runs the image's cat in a sandbox.
func TestTemplateImportLayout(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client

	dir := t.TempDir()
	archive := filepath.Join(dir, "img.tar")
	writeCatImage(t, filepath.Join(harness.TemplatesDir(), "base", "rootfs"), archive)
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()

	tmpl := fmt.Sprintf("e2e-layout-%d", os.Getpid())
	cliOK(t, ctx, srv, "template", "import", tmpl, "--oci-layout", filepath.Join(dir, "layout"), "--json")
	t.Cleanup(func() {
		if err := c.DeleteTemplate(context.Background(), tmpl); err != nil {
			t.Errorf("delete template %s: %v", tmpl, err)
		}
	})
	var d client.TemplateDetail
	decodeStrict(t, cliOK(t, ctx, srv, "template", "inspect", tmpl, "--json"), &d)
	if d.Source != "layout "+filepath.Join(dir, "layout") || len(d.Layers) != 1 || d.Layers[0].Digest != ld.String() ||
		strings.Join(d.StartCmd, " ") != "/usr/bin/cat" || d.User != "root" || d.DiskBytes == 0 || d.Sandboxes != 0 {
		t.Fatalf("inspect of the layout import (image %s): %+v", digest, d)
	}
	text := cliOK(t, ctx, srv, "template", "inspect", tmpl)
	for _, want := range []string{"Layers", ld.String(), "Start command", "/usr/bin/cat", "(server default)"} {
		if !strings.Contains(text, want) {
			t.Errorf("sbx template inspect lacks %q:\n%s", want, text)
		}
	}

	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: tmpl})
	if err != nil {
		t.Fatalf("create sandbox from %s: %v\n%s", tmpl, err, srv.Logs())
	}
	defer sb.Kill(context.WithoutCancel(ctx))
	var stdout bytes.Buffer
	code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "/usr/bin/cat", Args: []string{"/etc/motd-sbx"}, Stdout: &stdout})
	if err != nil || code != 0 || stdout.String() != "imported\n" {
		t.Fatalf("cat /etc/motd-sbx: code %d, err %v, stdout %q", code, err, stdout.String())
	}
}
