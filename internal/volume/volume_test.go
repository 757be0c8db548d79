package volume

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, abs, rel string }{
		{"/", "/", "."},
		{".", "/", "."},
		{"a", "/a", "a"},
		{"/a/b/", "/a/b", "a/b"},
		{"//a//./b", "/a/b", "a/b"},
	} {
		abs, rel, err := clean(tc.in)
		if err != nil || abs != tc.abs || rel != tc.rel {
			t.Errorf("clean(%q) = %q, %q, %v; want %q, %q", tc.in, abs, rel, err, tc.abs, tc.rel)
		}
	}
	for _, bad := range []string{"", "..", "/..", "a/../b", "../../etc/passwd", "/a/..", "a\x00b"} {
		if _, _, err := clean(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("clean(%q): %v, want invalid argument", bad, err)
		}
	}
}

// TestRootConfines checks the property the content API rests on: paths
// through symlinks that leave the root are refused, with a class that is
// a 4xx, never followed.
func TestRootConfines(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, target := range map[string]string{"abs": filepath.Join(outside, "secret"), "root": "/", "rel": "../../../../../../" + outside, "in": "file"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, p := range []string{"abs", "root/etc/passwd", "rel/secret"} {
		f, err := r.Open(p)
		if err == nil {
			f.Close()
			t.Errorf("open %s through the root succeeded", p)
			continue
		}
		if c := fsError(err, p); !errors.Is(c, errdefs.ErrPermissionDenied) && !errors.Is(c, errdefs.ErrNotFound) {
			t.Errorf("open %s: %v classed as %v, want permission denied", p, err, c)
		}
	}
	b, err := r.ReadFile("in")
	if err != nil || string(b) != "ok" {
		t.Fatalf("a symlink inside the root: %q, %v", b, err)
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	k1, err := loadKey(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loadKey(filepath.Join(dir, "k"))
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("the key changed on reload: %v", err)
	}
	m := &Manager{key: k1}
	tok := m.Token("aaaaaaaaaaaaaaaaaaaa")
	if !m.Verify("aaaaaaaaaaaaaaaaaaaa", tok) || m.Verify("bbbbbbbbbbbbbbbbbbbb", tok) || m.Verify("aaaaaaaaaaaaaaaaaaaa", tok+"x") || m.Verify("aaaaaaaaaaaaaaaaaaaa", "") {
		t.Fatal("a token opens only its own volume")
	}
	other := &Manager{key: make([]byte, 32)}
	if other.Verify("aaaaaaaaaaaaaaaaaaaa", tok) {
		t.Fatal("a token made under another key verified")
	}
}
