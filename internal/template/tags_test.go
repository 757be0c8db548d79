package template

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		ref, name, tag, canon string
		bad                   bool
	}{
		{ref: "web", name: "web", tag: DefaultTag, canon: "web"},
		{ref: "web:v1", name: "web", tag: "v1", canon: "web:v1"},
		{ref: "web:v1.2-rc_3", name: "web", tag: "v1.2-rc_3", canon: "web:v1.2-rc_3"},
		{ref: "web:default", name: "web", tag: DefaultTag, canon: "web"},
		{ref: "web:latest", name: "web", tag: DefaultTag, canon: "web"},
		{ref: "web:", bad: true},
		{ref: "web:V1", bad: true},
		{ref: "web:a:b", bad: true},
		{ref: "web:../x", bad: true},
		{ref: "web:.x", bad: true},
		{ref: "../web:v1", bad: true},
		{ref: ":v1", bad: true},
		{ref: "", bad: true},
		{ref: "web:" + string(make([]byte, 64)), bad: true},
	} {
		name, tag, err := ParseRef(c.ref)
		if c.bad {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("ParseRef(%q) = %q, %q, %v; want invalid argument", c.ref, name, tag, err)
			}
			continue
		}
		if err != nil || name != c.name || tag != c.tag {
			t.Errorf("ParseRef(%q) = %q, %q, %v; want %q, %q", c.ref, name, tag, err, c.name, c.tag)
		}
		if canon, err := CanonicalRef(c.ref); err != nil || canon != c.canon {
			t.Errorf("CanonicalRef(%q) = %q, %v; want %q", c.ref, canon, err, c.canon)
		}
	}
}

// TestTags checks tagged builds: each tag its own build, the default tag
// the name's own entry, assignment and removal of tags, that a tag keeps
// the layers it uses from the layer gc, and that a tag may stand on a
// template with a rootfs of its own.
func TestTags(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	ctx := context.Background()
	s, err := NewStore(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(s.Dir(), buildPrefx+"root")
	if err := os.MkdirAll(filepath.Join(build, rootfsDir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.install(build, Info{Name: "root", Created: time.Now().UTC()}); err != nil {
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
	l1, l2 := commit('1'), commit('2')
	v1, err := s.InstallBuilt(ctx, Info{Name: "app:v1", BuildID: "build-1", Stack: []string{l1.ID}, Base: "root", Env: []string{"T=v1"}})
	if err != nil {
		t.Fatal(err)
	}
	if v1.Name != "app:v1" {
		t.Errorf("name of a tagged build: %q", v1.Name)
	}
	if _, err := s.InstallBuilt(ctx, Info{Name: "app:latest", BuildID: "build-2", Stack: []string{l2.ID}, Base: "root", Env: []string{"T=default"}}); err != nil {
		t.Fatal(err)
	}
	l1.Release()
	l2.Release()
	exists := func(r *LayerRef) bool { _, err := os.Stat(r.Path); return err == nil }
	if !exists(l1) || !exists(l2) {
		t.Fatalf("the layers of tags were collected: l1 %v, l2 %v", exists(l1), exists(l2))
	}
	env := func(ref string) string {
		t.Helper()
		in, err := s.Get(ref)
		if err != nil {
			t.Fatalf("Get(%q): %v", ref, err)
		}
		return in.Env[0]
	}
	if env("app") != "T=default" || env("app:default") != "T=default" || env("app:v1") != "T=v1" {
		t.Errorf("envs: app %s, app:v1 %s", env("app"), env("app:v1"))
	}
	if _, err := s.Get("app:v9"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown tag: %v", err)
	}
	infos, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range infos {
		names = append(names, in.Name)
	}
	if !reflect.DeepEqual(names, []string{"app", "root"}) {
		t.Errorf("List = %v, want the default tags only", names)
	}

	if _, err := s.AssignTags(ctx, "app:v1", []string{"prod", "stable"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AssignTags(ctx, "app:v1", []string{"Bad"}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad tag: %v", err)
	}
	if _, err := s.AssignTags(ctx, "app:nope", []string{"x"}, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown target: %v", err)
	}
	// A tag on a template with a rootfs of its own stands on it.
	if _, err := s.AssignTags(ctx, "root", []string{"pinned"}, nil); err != nil {
		t.Fatal(err)
	}
	pinned, err := s.Get("root:pinned")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(s.Dir(), "root", rootfsDir)}; !reflect.DeepEqual(pinned.LayerPaths, want) {
		t.Errorf("root:pinned layers %v, want %v", pinned.LayerPaths, want)
	}
	if err := s.Remove(ctx, "root"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("removing a template a tag stands on: %v", err)
	}
	if _, err := s.AssignTags(ctx, "app:v1", []string{DefaultTag}, nil); err != nil {
		t.Fatal(err)
	}
	if env("app") != "T=v1" {
		t.Errorf("default tag moved to v1: %s", env("app"))
	}
	if exists(l2) {
		t.Error("the layer only the old default tag used was kept")
	}

	tags, err := s.Tags(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var order []string
	for _, tg := range tags {
		got[tg.Tag] = tg.BuildID
		order = append(order, tg.Tag)
		if tg.Assigned.IsZero() {
			t.Errorf("tag %s: no time", tg.Tag)
		}
	}
	if want := []string{"default", "prod", "stable", "v1"}; !reflect.DeepEqual(order, want) {
		t.Errorf("tags %v, want %v", order, want)
	}
	for _, tg := range order {
		if got[tg] != "build-1" {
			t.Errorf("tag %s points at %s, want build-1", tg, got[tg])
		}
	}
	if tags, err := s.Tags(ctx, "root"); err != nil || len(tags) != 2 || tags[0].BuildID != tags[1].BuildID || tags[0].BuildID == "" {
		t.Errorf("tags of root (no build id of its own): %+v, %v", tags, err)
	}
	if _, err := s.Tags(ctx, "nothing"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("tags of an unknown name: %v", err)
	}

	for _, ref := range []string{"app:prod", "app:stable", "app:v1", "app"} {
		if err := s.Remove(ctx, ref); err != nil {
			t.Fatalf("Remove(%q): %v", ref, err)
		}
	}
	if exists(l1) {
		t.Error("a layer no tag uses was kept")
	}
	if s.Exists("app") {
		t.Error("app exists after removing every tag")
	}
	if err := s.Remove(ctx, "root:pinned"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "root"); err != nil {
		t.Errorf("removing root once no tag stands on it: %v", err)
	}
}
