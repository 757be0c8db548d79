package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestSandboxLifeRoundTrip(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		life := SandboxLife{Persistent: true, OnTimeout: "pause", TimeoutFilesOnly: true, AutoResume: true,
			IdlePause: 90 * time.Second, PauseKind: "frozen", PausedAt: time.Unix(1700000000, 0).UTC()}
		if err := db.PutSandbox(ctx, &Sandbox{ID: "a", Template: "base", State: "paused", Runtime: "runc", CreatedAt: time.Now(), Life: life}); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetSandbox(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Life, life) {
			t.Fatalf("life = %+v, want %+v", got.Life, life)
		}
	})
}

func TestSnapshots(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		a := &Snapshot{ID: "snap-a", Name: "first", SandboxID: "sb", Template: "base", Kind: "files", State: "ready",
			CreatedAt: time.Unix(1, 0).UTC(), SizeBytes: 4096, CPUs: 1, MemoryMB: 512, Runtime: "runc"}
		b := &Snapshot{ID: "snap-b", SandboxID: "sb", Template: "snap-a", Kind: "memory", State: "creating", Internal: true,
			CreatedAt: time.Unix(2, 0).UTC(), Runtime: "runsc"}
		for _, sn := range []*Snapshot{a, b} {
			if err := db.PutSnapshot(ctx, sn); err != nil {
				t.Fatal(err)
			}
		}
		for _, ref := range []string{"snap-a", "first"} {
			got, err := db.GetSnapshot(ctx, ref)
			if err != nil || *got != *a {
				t.Fatalf("GetSnapshot(%s) = %+v, %v", ref, got, err)
			}
		}
		// An empty name never matches.
		if _, err := db.GetSnapshot(ctx, ""); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("GetSnapshot(\"\") = %v", err)
		}
		list, err := db.ListSnapshots(ctx)
		if err != nil || len(list) != 2 || list[0].ID != "snap-a" || list[1].ID != "snap-b" || !list[1].Internal {
			t.Fatalf("ListSnapshots = %+v, %v", list, err)
		}
		if n, err := db.CountSnapshotsByTemplate(ctx, "snap-a"); err != nil || n != 1 {
			t.Fatalf("CountSnapshotsByTemplate = %d, %v", n, err)
		}
		if err := db.DeleteSnapshot(ctx, "snap-a"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetSnapshot(ctx, "first"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
	})
}

// TestRetargetTemplate: the live sandboxes and the snapshots of a template
// follow it to its new name; killed and failed sandboxes keep the old one.
func TestRetargetTemplate(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		for _, sb := range []*Sandbox{
			{ID: "run", Template: "base", State: "running"},
			{ID: "paused", Template: "base", State: "paused"},
			{ID: "gone", Template: "base", State: "killed"},
			{ID: "other", Template: "web", State: "running"},
		} {
			sb.Runtime, sb.CreatedAt = "runc", time.Now()
			if err := db.PutSandbox(ctx, sb); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.PutSnapshot(ctx, &Snapshot{ID: "snap", SandboxID: "run", Template: "base", Kind: "files", State: "ready", CreatedAt: time.Now(), Runtime: "runc"}); err != nil {
			t.Fatal(err)
		}
		if err := db.RetargetTemplate(ctx, "base", "base.0123456789ab"); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[string]string{"run": "base.0123456789ab", "paused": "base.0123456789ab", "gone": "base", "other": "web"} {
			if sb, err := db.GetSandbox(ctx, id); err != nil || sb.Template != want {
				t.Errorf("sandbox %s: template %q, %v; want %q", id, sb.Template, err, want)
			}
		}
		if sn, err := db.GetSnapshot(ctx, "snap"); err != nil || sn.Template != "base.0123456789ab" {
			t.Errorf("snapshot: %+v, %v", sn, err)
		}
		if n, err := db.CountSandboxesByTemplate(ctx, "base"); err != nil || n != 0 {
			t.Errorf("live sandboxes of base after the retarget: %d, %v", n, err)
		}
	})
}
