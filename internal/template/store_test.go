package template

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// sharedDir is where template tests keep the base template between runs (and
// between packages: the runc driver tests use the same one), so only the
// first run pays for debootstrap.
const sharedDir = "/var/cache/sbx-test/templates"

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"base", true},
		{"a", true},
		{"0", true},
		{"python3.12-slim_v2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{".", false},
		{"..", false},
		{".hidden", false},
		{"-x", false},
		{"_x", false},
		{"Base", false},
		{"a/b", false},
		{"../etc", false},
		{"a b", false},
		{"a\x00", false},
		{"ünï", false},
	} {
		err := ValidateName(tc.name)
		if tc.ok && err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidArgument", tc.name, err)
		}
	}
}

func TestMirrorIn(t *testing.T) {
	for _, tc := range []struct {
		text   string
		deb822 bool
		want   string
	}{
		{"deb http://ftp.de.debian.org/debian bookworm main\n", false, "http://ftp.de.debian.org/debian"},
		{"deb [signed-by=/x.gpg arch=amd64] http://m/debian/ bookworm main\n", false, "http://m/debian"},
		{"# deb http://a/debian bookworm main\ndeb-src http://b/debian bookworm main\n", false, ""},
		{"deb http://security.debian.org/debian-security bookworm-security main\n", false, ""},
		{"Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n", true, "http://deb.debian.org/debian"},
		{"Types: deb\nURIs: http://archive.ubuntu.com/ubuntu\nSuites: noble\n", true, ""},
		{"Types: deb\nURIs: http://x/debian\nSuites: bookworm\nEnabled: no\n", true, ""},
	} {
		if got := mirrorIn(tc.text, tc.deb822); got != tc.want {
			t.Errorf("mirrorIn(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestStages(t *testing.T) {
	in := "I: Retrieving InRelease \nI: Checking Release signature\nI: Retrieving Packages \nI: Validating Packages \n" +
		"I: Retrieving libc6 2.36\nI: Retrieving bash 5.2\nI: Validating libc6 2.36\nW: something odd\n" +
		"I: Installing core packages...\nI: Unpacking libc6:amd64...\nI: Unpacking bash...\ndpkg chatter\n" +
		"I: Base system installed successfully.\n"
	var out bytes.Buffer
	tail := stages(strings.NewReader(in), &out)
	want := "  Retrieving packages\n  Checking Release signature\n  Retrieving packages\n" +
		"  W: something odd\n  Installing core packages...\n  Unpacking packages\n  Base system installed successfully.\n"
	if out.String() != want {
		t.Errorf("stages output:\n%s\nwant:\n%s", out.String(), want)
	}
	if len(tail) == 0 || tail[len(tail)-1] != "I: Base system installed successfully." {
		t.Errorf("tail = %q", tail)
	}
}

func TestGetListRemove(t *testing.T) {
	ctx := context.Background()
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Get("../x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Get(bad name) = %v, want ErrInvalidArgument", err)
	}
	for _, name := range []string{"two", "one"} {
		build := filepath.Join(s.Dir(), buildPrefx+name)
		if err := os.MkdirAll(filepath.Join(build, rootfsDir, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(build, rootfsDir, "etc", "f"), []byte("12345"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.install(build, Info{Name: name, Created: time.Now(), Defaults: BaseDefaults}); err != nil {
			t.Fatal(err)
		}
	}
	// An incomplete directory (no meta.json) and store internals are not templates.
	os.MkdirAll(filepath.Join(s.Dir(), "partial", rootfsDir), 0o755)
	os.MkdirAll(filepath.Join(s.Dir(), buildPrefx+"x"), 0o755)

	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "one" || list[1].Name != "two" {
		t.Fatalf("List = %+v, want one, two", list)
	}
	one, err := s.Get("one")
	if err != nil {
		t.Fatal(err)
	}
	if one.SizeBytes != 5 || one.Defaults.User != "user" || one.RootfsPath != filepath.Join(s.Dir(), "one", rootfsDir) {
		t.Errorf("Get(one) = %+v", one)
	}
	if err := s.Remove(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("one"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get after Remove = %v, want ErrNotFound", err)
	}
	if err := s.Remove(ctx, "one"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second Remove = %v, want ErrNotFound", err)
	}
	if err := s.Remove(ctx, "/etc"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Remove(bad name) = %v, want ErrInvalidArgument", err)
	}
}

// TestEnsureBase builds (or finds) the real base template in the shared test
// cache. Two Stores race for it, as two test packages would.
func TestEnsureBase(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestEnsureBase needs root (debootstrap, chroot); run the tests as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var logs []string
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := NewStore(sharedDir, nil)
			if err != nil {
				errs[i] = err
				return
			}
			var buf bytes.Buffer
			errs[i] = s.EnsureBase(ctx, &buf)
			mu.Lock()
			logs = append(logs, buf.String())
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, l := range logs {
		if l != "" {
			t.Logf("progress:\n%s", l)
		}
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if logs[0] != "" && logs[1] != "" {
		t.Errorf("both callers built the template")
	}

	s, _ := NewStore(sharedDir, nil)
	info, err := s.Get(BaseName)
	if err != nil {
		t.Fatal(err)
	}
	if info.SizeBytes < 50<<20 || info.Defaults.User != "user" || info.Created.IsZero() {
		t.Errorf("base info = %+v", info)
	}
	for _, bin := range []string{"usr/bin/python3", "usr/bin/node", "usr/bin/npm", "usr/bin/git", "usr/bin/curl", "usr/bin/ps", "bin/bash"} {
		if _, err := os.Stat(filepath.Join(info.RootfsPath, bin)); err != nil {
			t.Errorf("base rootfs lacks %s: %v", bin, err)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(info.RootfsPath, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(passwd), "\nuser:x:1000:1000::/home/user:/bin/bash\n") {
		t.Errorf("base /etc/passwd has no user uid 1000:\n%s", passwd)
	}
	if fi, err := os.Stat(filepath.Join(info.RootfsPath, "home/user")); err != nil || !fi.IsDir() {
		t.Errorf("no /home/user: %v", err)
	}
	if lists, _ := filepath.Glob(filepath.Join(info.RootfsPath, "var/lib/apt/lists/*_Packages")); len(lists) > 0 {
		t.Errorf("apt lists not cleaned: %v", lists)
	}
}

// TestStoreDirPrivate: the store's directory is root's only, also when it
// existed with looser modes, so that no host user reaches the templates'
// set-uid files (owned by sandbox ids on the host).
func TestStoreDirPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "templates")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 { // an existing directory, then one it made itself
		if _, err := NewStore(dir, nil); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if m := st.Mode().Perm(); m != 0o700 {
			t.Fatalf("store directory mode %o, want 700", m)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
}
