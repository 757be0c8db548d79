package template

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func owner(t *testing.T, p string) (uint32, uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid, st.Mode & 07777
}

func TestShiftTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (chown)")
	}
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "home/user"), 0o755))
	must(os.WriteFile(filepath.Join(root, "home/user/f"), []byte("x"), 0o644))
	must(os.Lchown(filepath.Join(root, "home/user"), 1000, 1000))
	must(os.Lchown(filepath.Join(root, "home/user/f"), 1000, 1000))
	must(os.WriteFile(filepath.Join(root, "suid"), []byte("x"), 0o755))
	must(unix.Chmod(filepath.Join(root, "suid"), 0o4755))
	must(os.Link(filepath.Join(root, "suid"), filepath.Join(root, "hardlink")))
	must(os.Symlink("home/user/f", filepath.Join(root, "link")))

	const shift = 100000000
	must(shiftTree(context.Background(), root, 0, shift))
	for p, want := range map[string][3]uint32{
		"":            {shift, shift, 0},
		"home/user":   {shift + 1000, shift + 1000, 0o755},
		"home/user/f": {shift + 1000, shift + 1000, 0o644},
		"suid":        {shift, shift, 0o4755}, // chown cleared set-uid; it is restored
		"hardlink":    {shift, shift, 0o4755},
		"link":        {shift, shift, 0},
	} {
		uid, gid, mode := owner(t, filepath.Join(root, p))
		if uid != want[0] || gid != want[1] || (want[2] != 0 && mode != want[2]) {
			t.Errorf("%q: %d:%d %o, want %d:%d %o", p, uid, gid, mode, want[0], want[1], want[2])
		}
	}
	// Running it again (a shift interrupted and resumed) changes nothing.
	must(shiftTree(context.Background(), root, 0, shift))
	if uid, _, _ := owner(t, filepath.Join(root, "home/user/f")); uid != shift+1000 {
		t.Errorf("second shift moved ids: %d", uid)
	}
	// Back to unshifted ids.
	must(shiftTree(context.Background(), root, shift, 0))
	if uid, gid, _ := owner(t, filepath.Join(root, "home/user/f")); uid != 1000 || gid != 1000 {
		t.Errorf("unshift: %d:%d", uid, gid)
	}
	// An id outside the template range is refused, not guessed.
	must(os.Lchown(filepath.Join(root, "home/user/f"), 70000, 70000))
	if err := shiftTree(context.Background(), root, 0, shift); err == nil || !strings.Contains(err.Error(), "outside the template id range") {
		t.Errorf("out-of-range id: %v", err)
	}
}
