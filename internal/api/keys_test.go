package api

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

func openKeys(t *testing.T) (*Keys, *store.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sbx.db")
	db, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k, err := NewKeys(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return k, db, path
}

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k := NewKey()
		if !keyPattern.MatchString(k) {
			t.Fatalf("NewKey() = %q, not e2b_ and 40 lowercase hex digits", k)
		}
		if seen[k] {
			t.Fatalf("NewKey() repeated %q", k)
		}
		seen[k] = true
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	k, db, path := openKeys(t)
	if !k.Empty() {
		t.Fatal("a new database has keys")
	}

	// The first-start admin key, as given in SBX_API_KEY.
	given := "e2b_" + strings.Repeat("0123456789", 4)
	admin, secret, err := k.Create(ctx, "admin", given, true)
	if err != nil {
		t.Fatal(err)
	}
	if secret != given || !admin.Admin || admin.Prefix != given[:10] || !strings.HasPrefix(admin.ID, "key_") || k.Empty() {
		t.Errorf("Create(given) = %+v, %q", admin, secret)
	}
	// Only the hash is stored.
	stored, err := db.ListAPIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].Hash == given || stored[0].Hash != hashKey(given) || len(stored[0].Hash) != 64 {
		t.Errorf("stored = %+v, want one record holding the SHA-256 hex of the key", stored[0])
	}

	plain, plainSecret, err := k.Create(ctx, "ci", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if !keyPattern.MatchString(plainSecret) || plain.Admin || plain.ID == admin.ID {
		t.Errorf("Create(random) = %+v, %q", plain, plainSecret)
	}

	for _, tc := range []struct {
		key  string
		want string // the id Verify returns, "" for none
	}{
		{given, admin.ID},
		{plainSecret, plain.ID},
		{"", ""},
		{"e2b_" + strings.Repeat("f", 40), ""},
		{strings.ToUpper(given), ""},
		{given + "0", ""},
		{given[:len(given)-1], ""},
		{" " + given, ""},
		{"E2B_" + given[4:], ""},
		{hashKey(given), ""},
	} {
		rec, ok := k.Verify(tc.key)
		switch {
		case ok && rec.ID != tc.want:
			t.Errorf("Verify(%q) = %s, want %q", tc.key, rec.ID, tc.want)
		case !ok && tc.want != "":
			t.Errorf("Verify(%q) failed, want %s", tc.key, tc.want)
		}
	}

	for _, tc := range []struct {
		name, key string
		msg       string
	}{
		{"x", "secret", "e2b_ followed by 40 lowercase hex"},
		{"x", "e2b_" + strings.Repeat("A", 40), "e2b_ followed by 40 lowercase hex"},
		{"x", "e2b_" + strings.Repeat("a", 39), "e2b_ followed by 40 lowercase hex"},
		{strings.Repeat("n", 129), "", "at most 128 bytes"},
	} {
		if _, _, err := k.Create(ctx, tc.name, tc.key, false); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(errdefs.Message(err), tc.msg) {
			t.Errorf("Create(%.10q, %q) = %v, want invalid argument %q", tc.name, tc.key, err, tc.msg)
		}
	}
	// The same key twice: the hash is unique.
	if _, _, err := k.Create(ctx, "again", given, false); err == nil {
		t.Error("creating the same key twice succeeded")
	}

	// Keys survive a reopen.
	db2, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	k2, err := NewKeys(ctx, db2)
	if err != nil {
		t.Fatal(err)
	}
	if rec, ok := k2.Verify(plainSecret); !ok || rec.ID != plain.ID {
		t.Errorf("after reopen, Verify(plain) = %v, %v", rec, ok)
	}

	if err := k.Delete(ctx, admin.ID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("deleting the last admin key: %v, want failed precondition", err)
	}
	if err := k.Delete(ctx, "key_nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("deleting an unknown key: %v, want not found", err)
	}
	if err := k.Delete(ctx, plain.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Verify(plainSecret); ok {
		t.Error("a deleted key still verifies")
	}
	// With a second admin, the first may go.
	admin2, admin2Secret, err := k.Create(ctx, "admin2", "", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(ctx, admin.ID); err != nil {
		t.Fatalf("deleting one of two admin keys: %v", err)
	}
	if _, ok := k.Verify(given); ok {
		t.Error("the deleted admin key still verifies")
	}
	if err := k.Delete(ctx, admin2.ID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("deleting the remaining admin key: %v, want failed precondition", err)
	}
	if rec, ok := k.Verify(admin2Secret); !ok || !rec.Admin {
		t.Errorf("Verify(admin2) = %v, %v", rec, ok)
	}
}
