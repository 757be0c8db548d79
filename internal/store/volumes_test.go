package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestVolumes(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		now := time.Now().UTC().Truncate(time.Microsecond)
		a := &Volume{ID: "aaaaaaaaaaaaaaaaaaaa", Name: "a", SizeMB: 64, CreatedAt: now}
		b := &Volume{ID: "bbbbbbbbbbbbbbbbbbbb", Name: "b", SizeMB: 16, CreatedAt: now.Add(time.Second)}
		for _, v := range []*Volume{a, b} {
			if err := db.CreateVolume(ctx, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.CreateVolume(ctx, &Volume{ID: "cccccccccccccccccccc", Name: "a", SizeMB: 16, CreatedAt: now}); !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("second volume named a: %v, want a conflict", err)
		}
		if err := db.CreateVolume(ctx, &Volume{ID: a.ID, Name: "z", SizeMB: 16, CreatedAt: now}); !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("second volume with a's id: %v, want a conflict", err)
		}
		got, err := db.GetVolumeByName(ctx, "a")
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Fatalf("GetVolumeByName = %+v, %v; want %+v", got, err, a)
		}
		if _, err := db.GetVolume(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("unknown volume: %v", err)
		}
		list, err := db.ListVolumes(ctx)
		if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
			t.Fatalf("ListVolumes = %+v, %v", list, err)
		}

		// Mounts, and who holds a volume: sandboxes not over, records that exist.
		for id, state := range map[string]State{"s1": "running", "s2": "killed", "s3": "paused"} {
			if err := db.CreateSandbox(ctx, &Sandbox{ID: id, Template: "base", State: state, Runtime: "runc"}); err != nil {
				t.Fatal(err)
			}
		}
		mounts := []VolumeMount{{VolumeID: a.ID, Path: "/a"}, {VolumeID: b.ID, Path: "/b"}}
		for _, id := range []string{"s1", "s2", "gone"} {
			if err := db.SetSandboxVolumes(ctx, id, mounts); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.SetSandboxVolumes(ctx, "s3", mounts[1:]); err != nil {
			t.Fatal(err)
		}
		sm, err := db.SandboxVolumes(ctx, "s1")
		want := []VolumeMount{{VolumeID: a.ID, Name: "a", Path: "/a"}, {VolumeID: b.ID, Name: "b", Path: "/b"}}
		if err != nil || !reflect.DeepEqual(sm, want) {
			t.Fatalf("SandboxVolumes = %+v, %v; want %+v", sm, err, want)
		}
		all, err := db.AllSandboxVolumes(ctx)
		if err != nil || len(all) != 4 || !reflect.DeepEqual(all["s1"], want) || len(all["s3"]) != 1 {
			t.Fatalf("AllSandboxVolumes = %+v, %v", all, err)
		}
		users, err := db.VolumeUsers(ctx, a.ID, "killed", "failed")
		if err != nil || !reflect.DeepEqual(users, []string{"s1"}) {
			t.Fatalf("users of a = %v, %v; want [s1] (s2 is killed, gone has no record)", users, err)
		}
		users, err = db.VolumeUsers(ctx, b.ID, "killed", "failed")
		if err != nil || !reflect.DeepEqual(users, []string{"s1", "s3"}) {
			t.Fatalf("users of b = %v, %v", users, err)
		}
		if err := db.DeleteVolume(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteVolume(ctx, a.ID); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		if sm, err := db.SandboxVolumes(ctx, "s1"); err != nil || len(sm) != 1 || sm[0].VolumeID != b.ID {
			t.Fatalf("after deleting a, s1 mounts %+v, %v", sm, err)
		}
		// The name is free again.
		if err := db.CreateVolume(ctx, &Volume{ID: "dddddddddddddddddddd", Name: "a", SizeMB: 16, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	})
}
