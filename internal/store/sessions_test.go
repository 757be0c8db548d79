package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TestSessions stores, reads, revokes and prunes dashboard sessions on
// both engines.
func TestSessions(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		now := time.Now().UTC().Truncate(time.Microsecond)
		for _, ss := range []*Session{
			{Hash: "h1", KeyID: "k1", CSRFToken: "c1", CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour)},
			{Hash: "h2", KeyID: "k1", CSRFToken: "c2", CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour)},
			{Hash: "h3", KeyID: "k2", CSRFToken: "c3", CreatedAt: now, ExpiresAt: now.Add(-time.Minute)},
		} {
			if err := db.PutSession(ctx, ss); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.PutSession(ctx, &Session{Hash: "h1", KeyID: "k9"}); err == nil {
			t.Fatal("a second session with hash h1 was stored")
		}
		got, err := db.GetSession(ctx, "h1")
		if err != nil || got.KeyID != "k1" || got.CSRFToken != "c1" || !got.ExpiresAt.Equal(now.Add(12*time.Hour)) || !got.CreatedAt.Equal(now) {
			t.Fatalf("GetSession(h1) = %+v, %v", got, err)
		}
		if _, err := db.GetSession(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("GetSession(nope): %v; want not found", err)
		}
		hashes, err := db.DeleteKeySessions(ctx, "k1")
		slices.Sort(hashes)
		if err != nil || !slices.Equal(hashes, []string{"h1", "h2"}) {
			t.Fatalf("DeleteKeySessions(k1) = %v, %v", hashes, err)
		}
		if _, err := db.GetSession(ctx, "h2"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("h2 after its key's revocation: %v", err)
		}
		if n, err := db.PruneSessions(ctx, now); err != nil || n != 1 {
			t.Fatalf("PruneSessions = %d, %v; want 1", n, err)
		}
		if _, err := db.GetSession(ctx, "h3"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("h3 after pruning: %v", err)
		}
		if err := db.PutSession(ctx, &Session{Hash: "h4", KeyID: "k2", CSRFToken: "c4", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteSession(ctx, "h4"); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteSession(ctx, "h4"); err != nil {
			t.Fatalf("second delete: %v", err)
		}
		if _, err := db.GetSession(ctx, "h4"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("h4 after delete: %v", err)
		}
	})
}
