package template

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
)

const testShift = 100000000

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// layer makes an uncompressed layer from tar headers; a regular file's
// content is its Linkname field's value, moved to the body.
func layer(t *testing.T, hdrs ...tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Linkname)
			h.Linkname = ""
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.ModTime.IsZero() {
			h.ModTime = testTime
		}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func file(name, content string) tar.Header {
	return tar.Header{Typeflag: tar.TypeReg, Name: name, Linkname: content}
}
func dir(name string) tar.Header { return tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755} }

func image(t *testing.T, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func importStore(t *testing.T) *Store {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown to shifted ids)")
	}
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.IDShift = testShift
	return s
}

func TestImport(t *testing.T) {
	s := importStore(t)
	ctx := context.Background()
	img := image(t, v1.Config{Env: []string{"PATH=/bin", "A=b"}, WorkingDir: "/srv", User: "app:app", Entrypoint: []string{"/bin/app"}, Cmd: []string{"-v"}},
		layer(t,
			dir("etc/"), file("etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
			dir("gone/"), file("gone/a", "a"),
			dir("opq/"), file("opq/old", "old"), dir("opq/sub/"), file("opq/sub/x", "x"),
			file("wh-me", "x"),
			tar.Header{Typeflag: tar.TypeReg, Name: "bin/su", Linkname: "su", Mode: 0o4755, Uid: 0, Gid: 0},
			tar.Header{Typeflag: tar.TypeReg, Name: "home/app/f", Linkname: "mine", Mode: 0o600, Uid: 1000, Gid: 1001},
			tar.Header{Typeflag: tar.TypeLink, Name: "bin/su2", Linkname: "bin/su"},
			tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "/bin/busybox"},
			tar.Header{Typeflag: tar.TypeChar, Name: "dev-null", Devmajor: 1, Devminor: 3},
			tar.Header{Typeflag: tar.TypeFifo, Name: "fifo"},
		),
		layer(t,
			file("gone/.wh.a", ""), file(".wh.wh-me", ""),
			dir("opq/"), file("opq/new", "new"), file("opq/.wh..wh..opq", ""),
			file(".wh.not-there", ""),
		),
	)
	var progress bytes.Buffer
	info, err := s.Import(ctx, "img", img, &progress)
	if err != nil {
		t.Fatalf("Import: %v\n%s", err, progress.String())
	}
	if info.Defaults.User != "app" || info.Workdir != "/srv" || strings.Join(info.Env, ",") != "PATH=/bin,A=b" ||
		strings.Join(info.StartCmd, " ") != "/bin/app -v" || info.IDShift != testShift {
		t.Errorf("info = %+v", info)
	}
	if strings.Count(progress.String(), "layer ") != 2 || !strings.Contains(progress.String(), "skipping dev-null") || !strings.Contains(progress.String(), "skipping fifo") {
		t.Errorf("progress:\n%s", progress.String())
	}
	root := info.RootfsPath
	for _, p := range []string{"gone/a", "wh-me", "opq/old", "opq/sub", "dev-null", "fifo", "gone/.wh.a", "opq/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it gone", p, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "opq/new")); err != nil || string(b) != "new" {
		t.Errorf("opq/new = %q, %v", b, err)
	}
	st := func(p string) unix.Stat_t {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	su, su2 := st("bin/su"), st("bin/su2")
	if su.Mode&0o7777 != 0o4755 || su.Uid != testShift || su.Gid != testShift {
		t.Errorf("bin/su mode %o owner %d:%d", su.Mode&0o7777, su.Uid, su.Gid)
	}
	if su.Ino != su2.Ino || su.Nlink != 2 {
		t.Errorf("bin/su2 is not a hard link of bin/su")
	}
	if f := st("home/app/f"); f.Uid != testShift+1000 || f.Gid != testShift+1001 || f.Mode&0o7777 != 0o600 || f.Mtim.Sec != testTime.Unix() {
		t.Errorf("home/app/f: %+v", f)
	}
	if d := st("home"); d.Uid != testShift || d.Mode&0o7777 != 0o755 {
		t.Errorf("implicit dir home: %+v", d)
	}
	if d := st("etc"); d.Mtim.Sec != testTime.Unix() {
		t.Errorf("etc mtime %d, want %d", d.Mtim.Sec, testTime.Unix())
	}
	if l, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
	if got, err := s.Get("img"); err != nil || got.Workdir != "/srv" {
		t.Errorf("Get = %+v, %v", got, err)
	}
	if _, err := s.Import(ctx, "img", img, nil); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second import: %v, want conflict", err)
	}
	if _, err := s.Import(ctx, "Bad/Name", img, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad name: %v, want invalid argument", err)
	}
}

// TestImportHostile checks that layers cannot write outside the rootfs.
func TestImportHostile(t *testing.T) {
	s := importStore(t)
	ctx := context.Background()
	outside := t.TempDir()
	canary := filepath.Join(outside, "canary")
	if err := os.WriteFile(canary, []byte("safe"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name   string
		layers [][]tar.Header
		want   string
		class  error
	}{
		{"dotdot", [][]tar.Header{{file("../../../../../.."+canary, "pwned")}}, `path contains ".."`, errdefs.ErrInvalidArgument},
		{"dotdot inside", [][]tar.Header{{file("a/../../x", "pwned")}}, `path contains ".."`, errdefs.ErrInvalidArgument},
		{"absolute", [][]tar.Header{{file(canary, "pwned")}}, "absolute path", errdefs.ErrInvalidArgument},
		{"through symlink", [][]tar.Header{
			{{Typeflag: tar.TypeSymlink, Name: "out", Linkname: outside}},
			{file("out/canary", "pwned")},
		}, "symlink", errdefs.ErrInvalidArgument},
		{"through relative symlink", [][]tar.Header{{
			{Typeflag: tar.TypeSymlink, Name: "out", Linkname: "../../../../../../../.." + outside},
			file("out/canary", "pwned"),
		}}, "symlink", errdefs.ErrInvalidArgument},
		{"replace symlink target", [][]tar.Header{{
			{Typeflag: tar.TypeSymlink, Name: "c", Linkname: canary},
			file("c", "pwned"), // replaces the link, not its target
		}}, "", nil},
		{"hardlink outside", [][]tar.Header{{{Typeflag: tar.TypeLink, Name: "h", Linkname: "../" + canary}}}, "outside the image", errdefs.ErrInvalidArgument},
		{"hardlink absolute", [][]tar.Header{{{Typeflag: tar.TypeLink, Name: "h", Linkname: canary}}}, "outside the image", errdefs.ErrInvalidArgument},
		{"hardlink through symlink", [][]tar.Header{{
			{Typeflag: tar.TypeSymlink, Name: "out", Linkname: outside},
			{Typeflag: tar.TypeLink, Name: "h", Linkname: "out/canary"},
		}}, "symlink", errdefs.ErrInvalidArgument},
		{"hardlink missing", [][]tar.Header{{{Typeflag: tar.TypeLink, Name: "h", Linkname: "nope"}}}, "not in the image", errdefs.ErrInvalidArgument},
		{"whiteout through symlink", [][]tar.Header{
			{{Typeflag: tar.TypeSymlink, Name: "out", Linkname: outside}},
			{file("out/.wh.canary", "")},
		}, "symlink", errdefs.ErrInvalidArgument},
		{"opaque through symlink", [][]tar.Header{
			{{Typeflag: tar.TypeSymlink, Name: "out", Linkname: outside}},
			{file("out/.wh..wh..opq", "")},
		}, "symlink", errdefs.ErrInvalidArgument},
		{"id out of range", [][]tar.Header{{{Typeflag: tar.TypeReg, Name: "f", Uid: 65536}}}, "outside 0..65535", errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ls []v1.Layer
			for _, hs := range tc.layers {
				ls = append(ls, layer(t, hs...))
			}
			_, err := s.Import(ctx, fmt.Sprintf("h%d", i), image(t, v1.Config{}, ls...), nil)
			if tc.class == nil {
				if err != nil {
					t.Fatalf("Import: %v", err)
				}
			} else if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Import: %v, want %v containing %q", err, tc.class, tc.want)
			}
			if b, err := os.ReadFile(canary); err != nil || string(b) != "safe" {
				t.Fatalf("canary outside the rootfs = %q, %v", b, err)
			}
			if _, err := os.Stat(canary); err != nil {
				t.Fatal(err)
			}
		})
	}
	if ents, _ := filepath.Glob(filepath.Join(s.Dir(), ".build-*")); len(ents) != 0 {
		t.Errorf("failed imports left %v", ents)
	}
}

func TestImportTooLarge(t *testing.T) {
	s := importStore(t)
	s.MaxImportBytes = 10
	_, err := s.Import(context.Background(), "big", image(t, v1.Config{}, layer(t, file("a", "123456"), file("b", "123456"))), nil)
	if !errors.Is(err, errdefs.ErrTooLarge) || !strings.Contains(err.Error(), "import limit") {
		t.Fatalf("Import: %v, want too large", err)
	}
}

func TestImportSources(t *testing.T) {
	s := importStore(t)
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	img = image(t, v1.Config{User: "nobody"}, append(mustLayers(t, img), layer(t, file("etc/passwd", "root:x:0:0::/:/bin/sh\n")))...)
	ref, err := name.ParseReference(host+"/sbx/test:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	got, err := ImageFromRegistry(ctx, host+"/sbx/test:v1", true)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	info, err := s.Import(ctx, "reg", got, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if info.Defaults.User != "root" || info.SizeBytes < 2048 || strings.Count(progress.String(), "layer ") != 3 {
		t.Errorf("info %+v, progress:\n%s", info, progress.String())
	}
	if _, err := ImageFromRegistry(ctx, host+"/sbx/missing:v1", true); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing image: %v, want not found", err)
	}
	if _, err := ImageFromRegistry(ctx, "Not A Ref", true); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad ref: %v, want invalid argument", err)
	}

	tarPath := filepath.Join(t.TempDir(), "img.tar")
	if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
		t.Fatal(err)
	}
	fromTar, err := ImageFromTarball(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "tar", fromTar, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ImageFromTarball(tarPath + ".missing"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing tarball: %v", err)
	}
	if _, err := ImageFromLayout(t.TempDir()); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("empty dir as layout: %v", err)
	}
}

func mustLayers(t *testing.T, img v1.Image) []v1.Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}
