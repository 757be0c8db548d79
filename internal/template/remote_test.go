package template

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/objstore"
	"github.com/sbxdev/sbx/tests/harness"
)

func remoteStore(t *testing.T, b *objstore.Bucket, shift uint32) *Store {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root (chown to shifted ids, whiteouts are device nodes)")
	}
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.IDShift = shift
	s.Remote = b
	return s
}

func testBucket(t *testing.T) *objstore.Bucket {
	t.Helper()
	ep, bucket, ak, sk := harness.S3(t)
	b, err := objstore.Open(context.Background(), "s3://"+bucket+"/tpl?endpoint="+ep, objstore.Credentials{AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPublishFetch publishes a built template (a layer over a template
// with its own rootfs) from one store and fetches it into another with a
// different id shift, checking every kind of entry a tree may hold.
func TestPublishFetch(t *testing.T) {
	ctx := context.Background()
	b := testBucket(t)
	const shiftB = 2 * testShift
	a := remoteStore(t, b, testShift)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// A base with its own rootfs, made as a build makes one.
	build := filepath.Join(a.Dir(), buildPrefx+"root")
	rfs := filepath.Join(build, rootfsDir)
	p := func(n string) string { return filepath.Join(rfs, n) }
	must(os.MkdirAll(p("etc"), 0o755))
	must(os.WriteFile(p("etc/conf"), []byte("conf"), 0o640))
	must(os.Lchown(p("etc/conf"), testShift+1000, testShift+1001))
	must(os.Link(p("etc/conf"), p("etc/conf2")))
	must(os.Symlink("/etc/passwd", p("link")))
	must(unix.Mkfifo(p("fifo"), 0o600))
	must(os.WriteFile(p("suid"), []byte("x"), 0o755))
	must(unix.Lsetxattr(p("suid"), "user.keep", []byte("v"), 0))
	must(unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))) // not carried
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(p("etc"), old, old))
	must(filepath.Walk(rfs, func(q string, _ os.FileInfo, err error) error {
		if err != nil || q == p("etc/conf") || q == p("etc/conf2") {
			return err
		}
		return os.Lchown(q, testShift, testShift)
	}))
	must(unix.Chmod(p("suid"), 0o4755)) // after the chown, which clears it
	must(a.install(build, Info{Name: "root", Env: []string{"A=1"}}))
	must(a.Publish(ctx, "root", false))

	// A layer on it, installed and published as a build does.
	up := t.TempDir()
	must(os.WriteFile(filepath.Join(up, "new"), []byte("new"), 0o644))
	must(unix.Mknod(filepath.Join(up, "gone"), unix.S_IFCHR, 0))
	must(os.Mkdir(filepath.Join(up, "opaque"), 0o755))
	must(unix.Lsetxattr(filepath.Join(up, "opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	must(filepath.Walk(up, func(q string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(q, testShift, testShift)
	}))
	ref, err := a.CommitLayer(ctx, layerID('a'), up, nil)
	must(err)
	_, err = a.InstallBuilt(ctx, Info{Name: "app", Stack: []string{ref.ID}, Base: "root", Workdir: "/w"})
	ref.Release()
	must(err)
	must(a.Publish(ctx, "app", true))

	bs := remoteStore(t, b, shiftB)
	if _, err := bs.Fetch(ctx, "missing", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Fetch of a template the bucket lacks: %v, want ErrNotFound", err)
	}
	var progress bytes.Buffer
	info, err := bs.Fetch(ctx, "app", &progress)
	must(err)
	if info.Workdir != "/w" || info.Base != "root" || len(info.LayerPaths) != 2 || info.IDShift != shiftB {
		t.Fatalf("fetched app: %+v", info)
	}
	if !strings.Contains(progress.String(), "fetching template app") || !strings.Contains(progress.String(), "fetching template root") {
		t.Errorf("progress: %q", progress.String())
	}
	root, err := bs.Get("root")
	must(err)
	if root.SizeBytes == 0 || len(root.Env) != 1 {
		t.Errorf("fetched root: %+v", root)
	}
	q := func(n string) string { return filepath.Join(root.RootfsPath, n) }
	var st, st2 unix.Stat_t
	must(unix.Lstat(q("etc/conf"), &st))
	if st.Uid != shiftB+1000 || st.Gid != shiftB+1001 || st.Mode&0o7777 != 0o640 {
		t.Errorf("etc/conf: owner %d:%d mode %o", st.Uid, st.Gid, st.Mode&0o7777)
	}
	must(unix.Lstat(q("etc/conf2"), &st2))
	if st.Ino != st2.Ino {
		t.Error("the hard link became a copy")
	}
	if b, _ := os.ReadFile(q("etc/conf")); string(b) != "conf" {
		t.Errorf("etc/conf: %q", b)
	}
	must(unix.Lstat(q("etc"), &st))
	if st.Mtim.Sec != old.Unix() || st.Uid != shiftB {
		t.Errorf("etc: mtime %d want %d, uid %d", st.Mtim.Sec, old.Unix(), st.Uid)
	}
	must(unix.Lstat(q("."), &st))
	if st.Uid != shiftB || st.Mode&0o7777 != 0o755 {
		t.Errorf("rootfs root: uid %d mode %o", st.Uid, st.Mode&0o7777)
	}
	if target, err := os.Readlink(q("link")); err != nil || target != "/etc/passwd" {
		t.Errorf("symlink: %q, %v", target, err)
	}
	must(unix.Lstat(q("fifo"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo: mode %o", st.Mode)
	}
	must(unix.Lstat(q("suid"), &st))
	if st.Mode&0o7777 != 0o4755 {
		t.Errorf("suid: mode %o", st.Mode&0o7777)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(q("suid"), "user.keep", buf); err != nil || string(buf[:n]) != "v" {
		t.Errorf("user.keep: %q, %v", buf[:n], err)
	}
	if _, err := os.Lstat(q("null")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a device node was carried")
	}
	l := func(n string) string { return filepath.Join(info.LayerPaths[0], n) }
	must(unix.Lstat(l("gone"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 || st.Uid != shiftB {
		t.Errorf("whiteout: mode %o rdev %d uid %d", st.Mode, st.Rdev, st.Uid)
	}
	if n, err := unix.Lgetxattr(l("opaque"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque marker: %q, %v", buf[:n], err)
	}
	if b, _ := os.ReadFile(l("new")); string(b) != "new" {
		t.Errorf("layer file: %q", b)
	}

	// Fetched twice at once into a third store: one download, both see it.
	c := remoteStore(t, b, testShift)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Fetch(ctx, "app", nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		must(err)
	}
	if l, _ := c.List(ctx); len(l) != 2 {
		t.Errorf("after concurrent fetches: %d templates, want 2", len(l))
	}

	// A removal takes the template out of the bucket too: removed here,
	// it is not fetched back, nor by a server that never had it.
	must(a.Remove(ctx, "app"))
	if _, err := a.Get("app"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("after removal: %v", err)
	}
	if _, err := remoteStore(t, b, testShift).Fetch(ctx, "app", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Fetch of a removed template: %v, want ErrNotFound", err)
	}
	if _, err := c.Get("app"); err != nil {
		t.Errorf("a server that fetched it keeps its copy: %v", err)
	}
}

// TestFetchDamaged checks that a blob whose bytes do not match its digest
// leaves no template behind.
func TestFetchDamaged(t *testing.T) {
	ctx := context.Background()
	b := testBucket(t)
	a := remoteStore(t, b, testShift)
	build := filepath.Join(a.Dir(), buildPrefx+"root")
	if err := os.MkdirAll(filepath.Join(build, rootfsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(build, rootfsDir, "f"), []byte("the original"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Lchown(filepath.Join(build, rootfsDir, "f"), testShift, testShift)
	os.Lchown(filepath.Join(build, rootfsDir), testShift, testShift)
	if err := a.install(build, Info{Name: "root"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, "root", true); err != nil {
		t.Fatal(err)
	}
	blobs, err := b.List(ctx, "blobs/")
	if err != nil || len(blobs) != 1 {
		t.Fatalf("blobs: %+v, %v", blobs, err)
	}
	// Same length, other bytes: a damaged or tampered copy.
	var tw bytes.Buffer
	w := tar.NewWriter(&tw)
	w.WriteHeader(&tar.Header{Name: ".", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX})
	w.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 12, Format: tar.FormatPAX})
	w.Write([]byte("the tampered"))
	w.Close()
	body := tw.Bytes()
	if int64(len(body)) < blobs[0].Size {
		body = append(body, make([]byte, blobs[0].Size-int64(len(body)))...)
	}
	if err := b.Put(ctx, blobs[0].Key, bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	c := remoteStore(t, b, testShift)
	if _, err := c.Fetch(ctx, "root", nil); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Fetch of a damaged blob: %v, want an error saying so", err)
	}
	if _, err := c.Get("root"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("after a failed fetch: %v, want no template", err)
	}
	if left, _ := filepath.Glob(filepath.Join(c.Dir(), fetchPrefx+"root-*")); len(left) != 0 {
		t.Errorf("a failed fetch left %v", left)
	}
}

// TestUnpackHostile feeds unpackTree archives that try to write outside
// the tree.
func TestUnpackHostile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	outside := t.TempDir()
	cases := map[string][]tar.Header{
		"dotdot":  {{Name: "../escape", Typeflag: tar.TypeReg}},
		"abs":     {{Name: "/abs", Typeflag: tar.TypeReg}},
		"symlink": {{Name: "l", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "l/escape", Typeflag: tar.TypeReg}},
		"link":    {{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}},
		"device":  {{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}},
		"owner":   {{Name: "f", Typeflag: tar.TypeReg, Uid: IDRange}},
	}
	for name, hdrs := range cases {
		var buf bytes.Buffer
		w := tar.NewWriter(&buf)
		for _, h := range hdrs {
			h.Mode = 0o644
			if err := w.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		dst := filepath.Join(t.TempDir(), "x")
		if err := unpackTree(context.Background(), &buf, dst, 0); err == nil {
			t.Errorf("%s: unpacked", name)
		}
	}
	if left, _ := os.ReadDir(outside); len(left) != 0 {
		t.Errorf("written outside the tree: %v", left)
	}
}
