package template

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestBuiltinSpecs(t *testing.T) {
	base, ok := builtin(BaseName)
	if !ok || base.setup != "" || base.startCmd != nil || base.readyPort != 0 || !slices.Equal(base.late, []string{"npm", "python-is-python3", "sudo", "libnss-myhostname"}) || base.defaults != BaseDefaults {
		t.Fatalf("base spec changed: %+v", base)
	}
	ci, ok := builtin(CodeInterpreterName)
	if !ok || ci.readyPort != CodeInterpreterPort || len(ci.startCmd) == 0 || ci.startCmd[0] != agentPath || ci.defaults.User != "user" {
		t.Fatalf("code interpreter spec: %+v", ci)
	}
	for _, p := range []string{"npm", "python3-ipykernel", "python3-pandas", "python3-matplotlib", "fonts-dejavu-core"} {
		if !slices.Contains(ci.late, p) {
			t.Errorf("code interpreter template lacks %s", p)
		}
	}
	for _, n := range Builtins() {
		if !IsBuiltin(n) || ValidateName(n) != nil {
			t.Errorf("built-in %q", n)
		}
	}
	if IsBuiltin("web") {
		t.Error("web is not built in")
	}
}

func TestEnsureBuiltinUnknown(t *testing.T) {
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBuiltin(context.Background(), "web", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("EnsureBuiltin(web) = %v, want not found", err)
	}
}

func TestBuiltinStale(t *testing.T) {
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ci, _ := builtin(CodeInterpreterName)
	install := func(source string) {
		t.Helper()
		build := t.TempDir()
		if err := os.Mkdir(filepath.Join(build, rootfsDir), 0o755); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(filepath.Join(s.Dir(), CodeInterpreterName))
		if err := s.install(build, Info{Name: CodeInterpreterName, Source: source}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want bool) {
		t.Helper()
		if got, err := s.BuiltinStale(CodeInterpreterName); err != nil || got != want {
			t.Fatalf("BuiltinStale = %v, %v; want %v", got, err, want)
		}
	}
	check(false) // not installed
	install(ci.source())
	check(false)
	// Built before R was added: packages differ.
	old := ci
	old.late = slices.DeleteFunc(slices.Clone(ci.late), func(p string) bool { return strings.HasPrefix(p, "r-") })
	install(old.source())
	check(true)
	// Another setup.
	old = ci
	old.setup += "true\n"
	install(old.source())
	check(true)
	// Imported under the name: not sbx's to rebuild.
	install("docker.io/library/debian:bookworm")
	check(false)
	if st, err := s.BuiltinStale(BaseName); err != nil || st {
		t.Fatalf("base: %v %v", st, err)
	}
	for _, p := range []string{"r-base-core", "r-cran-irkernel"} {
		if !slices.Contains(ci.late, p) {
			t.Errorf("code interpreter template lacks %s", p)
		}
	}
}
