package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestSecrets(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		now := time.Now().UTC().Truncate(time.Microsecond)
		a := &Secret{ID: "sec_a", Team: "t1", Name: "key", Version: 1, Sealed: "x1", Metadata: map[string]string{"k": "v"}, CreatedAt: now, UpdatedAt: now}
		b := &Secret{ID: "sec_b", Team: "t2", Name: "key", Version: 1, Sealed: "y1", CreatedAt: now, UpdatedAt: now}
		for _, s := range []*Secret{a, b} {
			if err := db.CreateSecret(ctx, s); err != nil {
				t.Fatalf("create %s (the same name in another team is allowed): %v", s.ID, err)
			}
		}
		if err := db.CreateSecret(ctx, &Secret{ID: "sec_c", Team: "t1", Name: "key", Version: 1, CreatedAt: now, UpdatedAt: now}); !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("second secret named key in t1: %v, want a conflict", err)
		}
		for _, ref := range []string{"sec_a", "key"} {
			got, err := db.GetSecret(ctx, "t1", ref)
			if err != nil || !reflect.DeepEqual(got, a) {
				t.Fatalf("GetSecret(t1, %s) = %+v, %v; want %+v", ref, got, err, a)
			}
		}
		if _, err := db.GetSecret(ctx, "t2", "sec_a"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("t1's secret from t2: %v, want not found", err)
		}
		if got, err := db.GetSecret(ctx, "t2", "key"); err != nil || got.ID != "sec_b" {
			t.Fatalf("t2's key = %+v, %v", got, err)
		}
		up := *a
		up.Version, up.Sealed, up.Metadata, up.UpdatedAt = 2, "x2", nil, now.Add(time.Second)
		if err := db.UpdateSecret(ctx, &up, 1); err != nil {
			t.Fatal(err)
		}
		if err := db.UpdateSecret(ctx, &up, 1); !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("update from a stale version: %v, want a conflict", err)
		}
		got, err := db.GetSecret(ctx, "t1", "sec_a")
		if err != nil || got.Version != 2 || got.Sealed != "x2" || len(got.Metadata) != 0 || !got.UpdatedAt.Equal(up.UpdatedAt) || !got.CreatedAt.Equal(now) {
			t.Fatalf("after update: %+v, %v", got, err)
		}
		list, err := db.ListSecrets(ctx, "t1", "", 0)
		if err != nil || len(list) != 1 || list[0].ID != "sec_a" {
			t.Fatalf("ListSecrets(t1) = %+v, %v", list, err)
		}
		if all, err := db.AllSecrets(ctx); err != nil || len(all) != 2 {
			t.Fatalf("AllSecrets = %+v, %v", all, err)
		}
		if err := db.DeleteSecret(ctx, "t2", "sec_a"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("delete of t1's secret by t2: %v, want not found", err)
		}
		if err := db.DeleteSecret(ctx, "t1", "sec_a"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetSecret(ctx, "t1", "key"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}

		// A team's secrets go with the team.
		if err := db.CreateTeam(ctx, &Team{ID: "t2", Name: "two"}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteTeam(ctx, "t2"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetSecret(ctx, "t2", "key"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("a deleted team's secret: %v, want not found", err)
		}
	})
}
