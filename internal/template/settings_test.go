package template

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TestLegacyLimitsIgnored: meta.json files written before limits became
// explicit recorded "cpus": 1 and "memoryBytes": 512 MiB for every
// template; they must not override the server's flags.
func TestLegacyLimitsIgnored(t *testing.T) {
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir(), "old")
	os.MkdirAll(filepath.Join(dir, rootfsDir), 0o755)
	legacy := `{"name":"old","created":"2026-11-20T10:00:00Z","sizeBytes":5,"defaults":{"defaultUser":"user","cpus":1,"memoryBytes":536870912},"idShift":0}`
	if err := os.WriteFile(filepath.Join(dir, metaFile), []byte(legacy), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := s.Get("old")
	if err != nil {
		t.Fatal(err)
	}
	if info.Defaults.CPUs != 0 || info.Defaults.MemoryMB != 0 || info.Defaults.User != "user" {
		t.Fatalf("legacy defaults = %+v, want no limits", info.Defaults)
	}
}

func TestSet(t *testing.T) {
	ctx := context.Background()
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(s.Dir(), buildPrefx+"t")
	os.MkdirAll(filepath.Join(build, rootfsDir), 0o755)
	if err := s.install(build, Info{Name: "t", Defaults: BaseDefaults, Env: []string{"A=1"}}); err != nil {
		t.Fatal(err)
	}
	start := StartShell("python3 -m http.server 8000")
	info, err := s.Set(ctx, "t", Settings{StartCmd: &start, ReadyPort: ptr(8000), CPUs: ptr(2.0), MemoryMB: ptr(int64(1024)), Workdir: ptr("/srv")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("t")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []Info{info, got} {
		if strings.Join(i.StartCmd, "|") != "/bin/sh|-c|python3 -m http.server 8000" || i.ReadyPort != 8000 ||
			i.Defaults.CPUs != 2 || i.Defaults.MemoryMB != 1024 || i.Workdir != "/srv" ||
			strings.Join(i.Env, ",") != "A=1" || i.Defaults.User != "user" {
			t.Errorf("after Set: %+v", i)
		}
	}
	// Clearing.
	empty := []string{}
	if got, err = s.Set(ctx, "t", Settings{StartCmd: &empty, ReadyPort: ptr(0), CPUs: ptr(0.0)}); err != nil || got.StartCmd != nil || got.ReadyPort != 0 || got.Defaults.CPUs != 0 || got.Defaults.MemoryMB != 1024 {
		t.Errorf("after clearing: %+v %v", got, err)
	}
	for name, st := range map[string]Settings{
		"port":    {ReadyPort: ptr(70000)},
		"workdir": {Workdir: ptr("srv")},
		"cpus":    {CPUs: ptr(-1.0)},
		"memory":  {MemoryMB: ptr(int64(8))},
		"env":     {Env: &[]string{"NOEQUALS"}},
		"timeout": {ReadyTimeoutSeconds: ptr(7200)},
		"argv":    {StartCmd: &[]string{""}},
	} {
		if _, err := s.Set(ctx, "t", st); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Set %s: %v, want invalid argument", name, err)
		}
	}
	if _, err := s.Set(ctx, "missing", Settings{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Set on a missing template: %v", err)
	}
	// No temporary files left beside meta.json.
	ents, _ := os.ReadDir(filepath.Join(s.Dir(), "t"))
	if len(ents) != 2 {
		t.Errorf("template dir holds %d entries, want rootfs and meta.json", len(ents))
	}
}

func ptr[T any](v T) *T { return &v }
