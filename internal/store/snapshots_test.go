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
