package template

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TestRetireBase: a base built from another definition is renamed to its
// retired name, the templates and tags built on it follow it there, and a
// failing retarget leaves everything as it was.
func TestRetireBase(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	ctx := context.Background()
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	installBase := func(source string) Info {
		t.Helper()
		build := filepath.Join(s.Dir(), buildPrefx+"base-"+randSuffix())
		if err := os.MkdirAll(filepath.Join(build, rootfsDir, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(build, rootfsDir, "etc", "marker"), []byte(source), 0o644); err != nil {
			t.Fatal(err)
		}
		info := Info{Name: BaseName, Source: source, Created: time.Now().UTC()}
		if err := s.install(build, info); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(BaseName)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	stale := func(want bool) {
		t.Helper()
		if _, got, err := s.BaseStale(); err != nil || got != want {
			t.Fatalf("BaseStale = %v, %v; want %v", got, err, want)
		}
	}

	stale(false) // none installed
	cur := installBase(baseSpec().source())
	stale(false)
	if got, err := s.RetireBase(ctx, nil); err != nil || got != "" {
		t.Fatalf("RetireBase of a current base = %q, %v", got, err)
	}
	os.RemoveAll(filepath.Join(s.Dir(), cur.Name))
	installBase("docker.io/library/debian:bookworm") // imported: not sbx's to retire
	stale(false)
	os.RemoveAll(filepath.Join(s.Dir(), BaseName))

	// An old base (without sudo), a template built on it and a tag of it.
	oldSpec := baseSpec()
	oldSpec.late = []string{"npm"}
	old := installBase(oldSpec.source())
	stale(true)
	up := t.TempDir()
	os.WriteFile(filepath.Join(up, "app"), []byte("app"), 0o644)
	layer, err := s.CommitLayer(ctx, layerID('a'), up, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.InstallBuilt(ctx, Info{Name: "app", Stack: []string{layer.ID}, Base: BaseName}); err != nil {
		t.Fatal(err)
	}
	layer.Release()
	if _, err := s.AssignTags(ctx, BaseName, []string{"v1"}, nil); err != nil {
		t.Fatal(err)
	}
	retired := RetiredName(old)
	if !IsRetiredBase(retired) || ValidateName(retired) != nil || RetiredName(old) != retired {
		t.Fatalf("retired name %q", retired)
	}

	// A retarget that fails moves nothing.
	boom := errors.New("boom")
	if _, err := s.RetireBase(ctx, func(ctx context.Context, from, to string, move func() error) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("RetireBase with a failing retarget = %v", err)
	}
	stale(true)
	if app, _ := s.Get("app"); app.Base != BaseName {
		t.Fatalf("app moved to %q by a failed retirement", app.Base)
	}

	var calls [][2]string
	got, err := s.RetireBase(ctx, func(ctx context.Context, from, to string, move func() error) error {
		calls = append(calls, [2]string{from, to})
		return move()
	})
	if err != nil || got != retired {
		t.Fatalf("RetireBase = %q, %v; want %q", got, err, retired)
	}
	if !slices.Equal(calls, [][2]string{{BaseName, retired}}) {
		t.Fatalf("retarget calls %v", calls)
	}
	if _, err := s.Get(BaseName); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("base still there after retiring: %v", err)
	}
	r, err := s.Get(retired)
	if err != nil || r.Source != old.Source {
		t.Fatalf("retired base: %+v, %v", r, err)
	}
	if b, err := os.ReadFile(filepath.Join(r.RootfsPath, "etc", "marker")); err != nil || string(b) != old.Source {
		t.Fatalf("retired base's files: %q, %v", b, err)
	}
	for _, ref := range []string{"app", "base:v1"} {
		in, err := s.Get(ref)
		if err != nil || in.Base != retired || !slices.Contains(in.LayerPaths, r.RootfsPath) {
			t.Fatalf("%s after the retirement: base %q, layers %v, %v", ref, in.Base, in.LayerPaths, err)
		}
	}
	if list, err := s.RetiredBases(ctx); err != nil || !slices.Equal(list, []string{retired}) {
		t.Fatalf("RetiredBases = %v, %v", list, err)
	}
	// In use by what is built on it: not removable yet.
	if err := s.Remove(ctx, retired); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("removing a retired base still in use: %v", err)
	}

	// A new base is current; retiring again is a no-op.
	installBase(baseSpec().source())
	if got, err := s.RetireBase(ctx, nil); err != nil || got != "" {
		t.Fatalf("RetireBase after the rebuild = %q, %v", got, err)
	}
	// A move that fails (the retired name taken) is reported, and the
	// retarget is told.
	os.RemoveAll(filepath.Join(s.Dir(), BaseName))
	again := installBase(oldSpec.source())
	if err := os.Mkdir(filepath.Join(s.Dir(), RetiredName(again)), 0o755); err != nil {
		t.Fatal(err)
	}
	var moveErr error
	if _, err := s.RetireBase(ctx, func(ctx context.Context, from, to string, move func() error) error {
		moveErr = move()
		return moveErr
	}); !errors.Is(err, errdefs.ErrConflict) || !errors.Is(moveErr, errdefs.ErrConflict) {
		t.Fatalf("RetireBase over a taken name = %v (move %v), want a conflict", err, moveErr)
	}
	stale(true)

	for _, n := range []string{"base", "base.1", "base.0123456789ab0", "base-0123456789ab", "xbase.0123456789ab"} {
		if IsRetiredBase(n) {
			t.Errorf("IsRetiredBase(%q)", n)
		}
	}
}
