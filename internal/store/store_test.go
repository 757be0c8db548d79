package store

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/pgtest"
)

func open(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// engine is one of the store's engines, with a function returning the
// store argument of Open for a fresh, empty database.
type engine struct {
	name  string
	fresh func(t testing.TB) string
}

func engines() []engine {
	return []engine{
		{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "sbx.db") }},
		{"postgres", func(t testing.TB) string { return pgtest.Postgres(t) }},
	}
}

// eachEngine runs f as a subtest per engine, on a fresh database.
func eachEngine(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Helper()
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) { f(t, e.fresh(t)) })
	}
}

func schemaVersion(t *testing.T, db *DB) int {
	t.Helper()
	var v, rows int
	if err := db.db.QueryRow(`SELECT max(version), count(*) FROM schema_version`).Scan(&v, &rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("schema_version has %d rows, want 1", rows)
	}
	return v
}

func TestOpenTwice(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		if v := schemaVersion(t, db); v != len(migrations) {
			t.Fatalf("schema version %d, want %d", v, len(migrations))
		}
		sb := &Sandbox{ID: "a", Template: "base", State: "running", Runtime: "runc", CreatedAt: time.Now()}
		if err := db.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}

		// Reopening runs no migration twice and keeps the data.
		db = open(t, dsn)
		if v := schemaVersion(t, db); v != len(migrations) {
			t.Fatalf("schema version after reopen %d, want %d", v, len(migrations))
		}
		if _, err := db.GetSandbox(ctx, "a"); err != nil {
			t.Fatalf("after reopen: %v", err)
		}
		// A second handle on the same database while the first is open.
		db2 := open(t, dsn)
		if got, err := db2.ListSandboxes(ctx); err != nil || len(got) != 1 {
			t.Fatalf("second handle: %d sandboxes, %v", len(got), err)
		}
	})
}

func TestOpenBadPath(t *testing.T) {
	if db, err := Open(context.Background(), filepath.Join(t.TempDir(), "missing", "dir", "sbx.db")); err == nil {
		db.Close()
		t.Fatal("Open in a missing directory succeeded")
	}
}

func TestSandboxRoundTrip(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		created := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
		full := &Sandbox{
			ID: "full", Template: "base", State: "running", Runtime: "runc",
			CreatedAt: created, StartedAt: created.Add(time.Second), EndAt: created.Add(time.Hour),
			Metadata:  map[string]string{"user": "alice", "empty": "", "unicode": "żółw"},
			EnvVars:   map[string]string{"PATH": "/bin", "X": "a=b"},
			EnvdToken: "envd", TrafficToken: "traffic",
			CPUs: 1.5, MemoryMB: 512, DiskMB: 1024, Pids: 100, Error: "",
		}
		// No time limit, no maps, in another time zone.
		local := time.FixedZone("X", 3*3600)
		bare := &Sandbox{
			ID: "bare", Template: "other", State: "failed", Runtime: "runc",
			CreatedAt: created.In(local).Add(time.Minute), StartedAt: created.In(local).Add(time.Minute),
			Error: "the sandbox stopped",
		}
		for _, sb := range []*Sandbox{full, bare} {
			if err := db.PutSandbox(ctx, sb); err != nil {
				t.Fatal(err)
			}
		}

		got, err := db.GetSandbox(ctx, "full")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, full) {
			t.Errorf("round trip:\n got  %+v\n want %+v", got, full)
		}

		got, err = db.GetSandbox(ctx, "bare")
		if err != nil {
			t.Fatal(err)
		}
		if !got.EndAt.IsZero() {
			t.Errorf("zero EndAt came back as %v", got.EndAt)
		}
		if !got.CreatedAt.Equal(bare.CreatedAt) || got.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt = %v, want %v in UTC", got.CreatedAt, bare.CreatedAt)
		}
		// nil maps come back empty, never nil, so callers can index them.
		if got.Metadata == nil || len(got.Metadata) != 0 || got.EnvVars == nil || len(got.EnvVars) != 0 {
			t.Errorf("nil maps came back as %#v, %#v", got.Metadata, got.EnvVars)
		}
		if got.Error != bare.Error {
			t.Errorf("Error = %q", got.Error)
		}

		// Put replaces.
		full.State = "killed"
		full.EndAt = time.Time{}
		if err := db.PutSandbox(ctx, full); err != nil {
			t.Fatal(err)
		}
		if got, err := db.GetSandbox(ctx, "full"); err != nil || got.State != "killed" || !got.EndAt.IsZero() {
			t.Errorf("after replace: %+v, %v", got, err)
		}

		if err := db.DeleteSandbox(ctx, "full"); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteSandbox(ctx, "full"); err != nil {
			t.Errorf("deleting a missing record: %v", err)
		}
		if _, err := db.GetSandbox(ctx, "full"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("GetSandbox after delete: %v, want not found", err)
		}
	})
}

func TestGetSandboxNotFound(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		db := open(t, dsn)
		_, err := db.GetSandbox(context.Background(), "nope")
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("GetSandbox(unknown) = %v, want errdefs.ErrNotFound", err)
		}
		if msg := errdefs.Message(err); msg != `sandbox "nope" not found` {
			t.Errorf("message = %q", msg)
		}
	})
}

func TestListSandboxes(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		for i, rec := range []struct {
			id       string
			state    State
			template string
		}{
			{"c", "running", "base"},
			{"a", "failed", "base"},
			{"b", "running", "py"},
			{"d", "killed", "base"},
			{"e", "creating", "base"},
			{"f", "paused", "py"},
		} {
			sb := &Sandbox{ID: rec.id, Template: rec.template, State: rec.state, Runtime: "runc", CreatedAt: t0.Add(time.Duration(i) * time.Second)}
			if rec.id == "b" {
				sb.CreatedAt = t0 // same time as c: ordered by id
			}
			if err := db.PutSandbox(ctx, sb); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			states []State
			want   []string
		}{
			{nil, []string{"b", "c", "a", "d", "e", "f"}},
			{[]State{"running"}, []string{"b", "c"}},
			{[]State{"running", "paused"}, []string{"b", "c", "f"}},
			{[]State{"failed", "killed", "creating"}, []string{"a", "d", "e"}},
			{[]State{"nothing"}, nil},
		} {
			got, err := db.ListSandboxes(ctx, tc.states...)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, sb := range got {
				ids = append(ids, sb.ID)
			}
			if !reflect.DeepEqual(ids, tc.want) {
				t.Errorf("ListSandboxes(%q) = %q, want %q", tc.states, ids, tc.want)
			}
		}

		for name, want := range map[string]int{"base": 2, "py": 2, "none": 0} {
			n, err := db.CountSandboxesByTemplate(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			// killed and failed sandboxes do not hold their template.
			if n != want {
				t.Errorf("CountSandboxesByTemplate(%q) = %d, want %d", name, n, want)
			}
		}
	})
}

func TestAPIKeys(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		if keys, err := db.ListAPIKeys(ctx); err != nil || len(keys) != 0 {
			t.Fatalf("empty database: %v, %v", keys, err)
		}
		t0 := time.Date(2025, 1, 1, 0, 0, 0, 1, time.UTC)
		admin := &APIKey{ID: "key_1", Name: "admin", Hash: "h1", Prefix: "e2b_000000", Suffix: "9abc", Admin: true, CreatedAt: t0}
		plain := &APIKey{ID: "key_2", Name: "", Hash: "h2", Prefix: "e2b_111111", CreatedAt: t0.Add(time.Second)}
		for _, k := range []*APIKey{plain, admin} {
			if err := db.PutAPIKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		keys, err := db.ListAPIKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 || !reflect.DeepEqual(keys[0], admin) || !reflect.DeepEqual(keys[1], plain) {
			t.Errorf("ListAPIKeys = %+v, %+v; want admin then plain", keys[0], keys[1])
		}

		if err := db.PutAPIKey(ctx, &APIKey{ID: "key_3", Hash: "h1", CreatedAt: t0}); err == nil {
			t.Error("a second key with the same hash was stored")
		}
		if err := db.PutAPIKey(ctx, &APIKey{ID: "key_1", Hash: "h3", CreatedAt: t0}); err == nil {
			t.Error("a second key with the same id was stored")
		}

		if err := db.RenameAPIKey(ctx, "key_2", "ci"); err != nil {
			t.Fatal(err)
		}
		if err := db.RenameAPIKey(ctx, "key_9", "ci"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("renaming a missing key: %v, want not found", err)
		}
		if keys, err := db.ListAPIKeys(ctx); err != nil || keys[1].Name != "ci" || keys[0].Name != "admin" {
			t.Errorf("after rename: %+v, %v", keys, err)
		}

		if err := db.DeleteAPIKey(ctx, "key_1"); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteAPIKey(ctx, "key_1"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("deleting a missing key: %v, want not found", err)
		}
		keys, err = db.ListAPIKeys(ctx)
		if err != nil || len(keys) != 1 || keys[0].ID != "key_2" {
			t.Errorf("after delete: %+v, %v", keys, err)
		}
		// The hash is free again once its key is gone.
		if err := db.PutAPIKey(ctx, &APIKey{ID: "key_4", Hash: "h1", CreatedAt: t0}); err != nil {
			t.Errorf("reusing a deleted key's hash: %v", err)
		}
	})
}

// TestUpdateSandboxCAS checks UpdateSandbox's compare-and-set: a writer
// holding an older version of a record is refused, even when the state it
// read has come round again (running, pausing, running), and the record is
// left as the newer writer made it.
func TestUpdateSandboxCAS(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		sb := &Sandbox{ID: "a", Template: "base", State: "running", Runtime: "runc", CreatedAt: time.Now()}
		if err := db.CreateSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
		a, err := db.GetSandbox(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.GetSandbox(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		// b moves the record away from running and back.
		for _, st := range []State{"pausing", "paused", "resuming", "running"} {
			b.State = st
			if err := db.UpdateSandbox(ctx, b); err != nil {
				t.Fatalf("update to %s: %v", st, err)
			}
		}
		if b.Version != a.Version+4 {
			t.Fatalf("version after 4 updates: %d, want %d", b.Version, a.Version+4)
		}
		// a still holds the first running: refused.
		a.State, a.Error = "failed", "stale writer"
		err = db.UpdateSandbox(ctx, a)
		if !errors.Is(err, ErrStale) || !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("stale update: %v, want ErrStale (a conflict)", err)
		}
		if a.Version != b.Version-4 {
			t.Errorf("a refused update advanced the caller's version to %d", a.Version)
		}
		got, err := db.GetSandbox(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != "running" || got.Error != "" || got.Version != b.Version {
			t.Fatalf("after a refused update: state %s, error %q, version %d; want running, \"\", %d", got.State, got.Error, got.Version, b.Version)
		}
		// A second record with the same id is refused, and changes nothing.
		if err := db.CreateSandbox(ctx, &Sandbox{ID: "a", Template: "other", State: "creating", Runtime: "runc"}); !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("CreateSandbox of an existing id: %v, want a conflict", err)
		}
		if got, err := db.GetSandbox(ctx, "a"); err != nil || got.Template != "base" {
			t.Fatalf("after a refused create: %+v, %v", got, err)
		}
		// The newer writer goes on.
		b.EndAt = time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
		if err := db.UpdateSandbox(ctx, b); err != nil {
			t.Fatalf("update at the current version: %v", err)
		}
		// A record that is gone is not found, not stale.
		if err := db.DeleteSandbox(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := db.UpdateSandbox(ctx, b); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("update of a deleted record: %v, want not found", err)
		}
	})
}
