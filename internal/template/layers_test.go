package template

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func layerID(c byte) string {
	b := make([]byte, 32)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// TestCommitLayer copies an overlay upper directory as a sandbox leaves
// it and checks what a layer must keep and what it must not.
func TestCommitLayer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (whiteouts are device nodes, opaque markers trusted.* xattrs)")
	}
	ctx := context.Background()
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	upper := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(n string) string { return filepath.Join(upper, n) }
	must(os.WriteFile(p("a"), []byte("content"), 0o640))
	must(os.Lchown(p("a"), 1000, 1001))
	must(unix.Lsetxattr(p("a"), "trusted.overlay.origin", []byte("x"), 0)) // one mount's bookkeeping
	must(unix.Lsetxattr(p("a"), "user.keep", []byte("v"), 0))
	must(os.Link(p("a"), p("b")))
	must(os.Symlink("/etc/passwd", p("l"))) // recreated, never followed
	must(os.Mkdir(p("d"), 0o750))
	must(unix.Lsetxattr(p("d"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(p("d/inner"), []byte("i"), 0o644))
	must(unix.Mknod(p("gone"), unix.S_IFCHR, 0))                           // a whiteout
	must(unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))) // not one
	must(os.MkdirAll(p(".sbx/run"), 0o755))

	id := layerID('a')
	ref, err := s.CommitLayer(ctx, id, upper, []string{".sbx"})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Release()
	if ref.Empty || ref.ID != id || ref.Path != filepath.Join(s.Dir(), ".layers", id, "fs") {
		t.Fatalf("ref %+v", ref)
	}
	l := func(n string) string { return filepath.Join(ref.Path, n) }
	var st, st2 unix.Stat_t
	must(unix.Lstat(l("a"), &st))
	if st.Mode&0o7777 != 0o640 || st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("a: mode %o owner %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if b, _ := os.ReadFile(l("a")); string(b) != "content" {
		t.Errorf("a: %q", b)
	}
	must(unix.Lstat(l("b"), &st2))
	if st.Ino != st2.Ino {
		t.Error("the hard link b became a copy")
	}
	if _, err := unix.Lgetxattr(l("a"), "trusted.overlay.origin", make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
		t.Errorf("trusted.overlay.origin was copied (%v)", err)
	}
	if n, err := unix.Lgetxattr(l("a"), "user.keep", make([]byte, 64)); err != nil || n != 1 {
		t.Errorf("user.keep: %d, %v", n, err)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(l("d"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque marker: %q, %v", buf[:n], err)
	}
	if target, err := os.Readlink(l("l")); err != nil || target != "/etc/passwd" {
		t.Errorf("symlink: %q, %v", target, err)
	}
	must(unix.Lstat(l("gone"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout: mode %o rdev %d", st.Mode, st.Rdev)
	}
	for _, n := range []string{"null", ".sbx"} {
		if _, err := os.Lstat(l(n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was copied into the layer", n)
		}
	}

	// Pinned again, found; a step that changed nothing is an empty layer.
	if r2, err := s.PinLayer(id); err != nil || r2.Empty {
		t.Errorf("PinLayer: %+v, %v", r2, err)
	} else {
		r2.Release()
	}
	if _, err := s.PinLayer(layerID('f')); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("PinLayer of a missing layer: %v", err)
	}
	empty, err := s.CommitLayer(ctx, layerID('b'), t.TempDir(), nil)
	if err != nil || !empty.Empty {
		t.Fatalf("empty upper: %+v, %v", empty, err)
	}
	empty.Release()

	// Overlay redirects would tie the layer to one mount's lowers.
	bad := t.TempDir()
	must(os.Mkdir(filepath.Join(bad, "moved"), 0o755))
	must(unix.Lsetxattr(filepath.Join(bad, "moved"), "trusted.overlay.redirect", []byte("/old"), 0))
	if _, err := s.CommitLayer(ctx, layerID('c'), bad, nil); err == nil {
		t.Error("an upper with a redirect was committed")
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), ".layers", layerID('c'))); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed commit left its layer")
	}
}

// TestInstallBuilt checks built templates: their layer paths, rebuilds,
// the protection of their base, and that removals delete the layers no
// template uses unless a build holds them.
func TestInstallBuilt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	ctx := context.Background()
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A template with a rootfs of its own.
	build := filepath.Join(s.Dir(), buildPrefx+"root")
	if err := os.MkdirAll(filepath.Join(build, rootfsDir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.install(build, Info{Name: "root"}); err != nil {
		t.Fatal(err)
	}
	commit := func(c byte) *LayerRef {
		up := t.TempDir()
		os.WriteFile(filepath.Join(up, string(c)), []byte{c}, 0o644)
		r, err := s.CommitLayer(ctx, layerID(c), up, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	l1, l2, l3 := commit('1'), commit('2'), commit('3')
	info, err := s.InstallBuilt(ctx, Info{Name: "app", Stack: []string{l2.ID, l1.ID}, Base: "root", Env: []string{"A=1"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{l2.Path, l1.Path, filepath.Join(s.Dir(), "root", rootfsDir)}
	if !reflect.DeepEqual(info.LayerPaths, want) || info.RootfsPath != "" || info.SizeBytes != 2 {
		t.Errorf("built template: paths %v (want %v), rootfs %q, size %d", info.LayerPaths, want, info.RootfsPath, info.SizeBytes)
	}
	if _, err := s.InstallBuilt(ctx, Info{Name: "root", Stack: []string{l1.ID}}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("a build over a template with its own rootfs: %v", err)
	}
	if err := s.Remove(ctx, "root"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("removing the base of a built template: %v", err)
	}
	l1.Release()
	l2.Release()

	// A rebuild without l2: l2 goes; l3 (held by a build) stays.
	if _, err := s.InstallBuilt(ctx, Info{Name: "app", Stack: []string{l1.ID}, Base: "root"}); err != nil {
		t.Fatal(err)
	}
	exists := func(r *LayerRef) bool { _, err := os.Stat(r.Path); return err == nil }
	if exists(l2) || !exists(l1) || !exists(l3) {
		t.Errorf("after the rebuild: l1 %v (want true), l2 %v (want false), l3 %v (want true, held)", exists(l1), exists(l2), exists(l3))
	}
	l3.Release()
	if err := s.Remove(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if exists(l1) || exists(l3) {
		t.Errorf("after removing the template: l1 %v, l3 %v, want both gone", exists(l1), exists(l3))
	}
	if err := s.Remove(ctx, "root"); err != nil {
		t.Errorf("removing the base once nothing stands on it: %v", err)
	}
}
