package template

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestBuiltinSpecs(t *testing.T) {
	base, ok := builtin(BaseName)
	if !ok || base.setup != "" || base.startCmd != nil || base.readyPort != 0 || !slices.Equal(base.late, []string{"npm"}) || base.defaults != BaseDefaults {
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
