package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/pgtest"
)

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`UPDATE t SET a = ?, b = ? WHERE id = ?`, `UPDATE t SET a = $1, b = $2 WHERE id = $3`},
		{`SELECT '?', "a?b", ? FROM t`, `SELECT '?', "a?b", $1 FROM t`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{"SELECT ? -- why? because\n, ?", "SELECT $1 -- why? because\n, $2"},
		{`SELECT 'unterminated ?`, `SELECT 'unterminated ?`},
		{`SELECT a - ? FROM t`, `SELECT a - $1 FROM t`},
	} {
		pg := &conn{pg: true}
		if got := pg.rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := (&conn{}).rebind(tc.in); got != tc.in {
			t.Errorf("SQLite rebind(%q) = %q, want it unchanged", tc.in, got)
		}
	}
}

func TestBindArgs(t *testing.T) {
	args := []any{"x", true, false, int64(7)}
	got := (&conn{pg: true}).bindArgs(args)
	if fmt.Sprint(got) != "[x 1 0 7]" {
		t.Errorf("Postgres args = %v", got)
	}
	if args[1] != true {
		t.Errorf("bindArgs changed its argument: %v", args)
	}
	if got := (&conn{}).bindArgs(args); fmt.Sprint(got) != "[x true false 7]" {
		t.Errorf("SQLite args = %v", got)
	}
}

func TestPostgresDDL(t *testing.T) {
	in := `CREATE TABLE x (a INTEGER NOT NULL, b REAL, c BIGINT, d DOUBLE PRECISION, integers_seen TEXT)`
	want := `CREATE TABLE x (a BIGINT NOT NULL, b DOUBLE PRECISION, c BIGINT, d DOUBLE PRECISION, integers_seen TEXT)`
	if got := postgresDDL(in); got != want {
		t.Errorf("postgresDDL = %q, want %q", got, want)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"/var/lib/sbx/sbx.db":                         "/var/lib/sbx/sbx.db",
		"postgres://sbx:secret@db:5432/sbx":           "postgres://sbx:xxxxx@db:5432/sbx",
		"postgresql://sbx@db/sbx?password=secret&x=1": "postgresql://sbx@db/sbx?password=xxxxx&x=1",
		"postgres://db/sbx?sslmode=disable":           "postgres://db/sbx?sslmode=disable",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenPostgresUnreachable checks that a database that is not there
// fails Open, saying where it looked but not the password.
func TestOpenPostgresUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := "postgres://sbx:secret@/sbx?host=" + t.TempDir() + "&connect_timeout=5"
	db, err := Open(ctx, dsn)
	if err == nil {
		db.Close()
		t.Fatal("Open of a missing server succeeded")
	}
	if strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "xxxxx") {
		t.Errorf("error %q: want the URL with its password redacted", err)
	}
}

// TestOpenSQLitePrefix checks that sqlite:PATH and sqlite://PATH name the
// same file as PATH.
func TestOpenSQLitePrefix(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/sbx.db"
	db := open(t, path)
	if err := db.PutSandbox(ctx, &Sandbox{ID: "a", Template: "base", State: "running", Runtime: "runc"}); err != nil {
		t.Fatal(err)
	}
	for _, dsn := range []string{"sqlite:" + path, "sqlite://" + path} {
		if _, err := open(t, dsn).GetSandbox(ctx, "a"); err != nil {
			t.Errorf("%s: %v", dsn, err)
		}
	}
}

// TestOpenPostgresqlScheme checks that postgresql:// opens the database
// postgres:// names.
func TestOpenPostgresqlScheme(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Postgres(t)
	if err := open(t, dsn).CreateSandbox(ctx, &Sandbox{ID: "a", Template: "base", State: "running", Runtime: "runc"}); err != nil {
		t.Fatal(err)
	}
	alt := "postgresql://" + strings.TrimPrefix(dsn, "postgres://")
	if !IsPostgres(alt) {
		t.Fatalf("IsPostgres(%q) = false", alt)
	}
	if _, err := open(t, alt).GetSandbox(ctx, "a"); err != nil {
		t.Fatalf("%s: %v", alt, err)
	}
}

// TestMigrateConcurrently starts many servers' worth of Opens at once on
// one fresh Postgres database: every one succeeds, the schema is complete,
// and each migration was counted once.
func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Postgres(t)
	const n = 8
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = Open(ctx, dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	for _, db := range dbs {
		if v := schemaVersion(t, db); v != len(migrations) {
			t.Fatalf("schema version %d, want %d", v, len(migrations))
		}
	}
	// Every table and column is there, of the right width: a unix-nano
	// time and a fractional CPU count round-trip on every handle.
	sb := &Sandbox{ID: "a", Template: "base", State: "running", Runtime: "runc",
		CreatedAt: time.Date(2200, 1, 1, 0, 0, 0, 1, time.UTC), CPUs: 0.1 + 0.2, MemoryMB: 1 << 40}
	if err := dbs[0].CreateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	for i, db := range dbs {
		got, err := db.GetSandbox(ctx, "a")
		if err != nil || !got.CreatedAt.Equal(sb.CreatedAt) || got.CPUs != sb.CPUs || got.MemoryMB != sb.MemoryMB {
			t.Fatalf("handle %d: %+v, %v", i, got, err)
		}
	}
	if err := dbs[n-1].PutSnapshot(ctx, &Snapshot{ID: "s", Kind: "files", State: "ready", CPUs: 1.5, Internal: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := dbs[1].GetSnapshot(ctx, "s"); err != nil {
		t.Fatal(err)
	}
}

// TestCASAcrossHandles races two separate Opens of one database (two
// pools, as two servers would hold) on one record, round after round:
// exactly one update wins each round and the other is refused as stale,
// and of two creates of one id exactly one succeeds.
func TestCASAcrossHandles(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a, b := open(t, dsn), open(t, dsn)
		const rounds = 100
		for r := range rounds {
			id := fmt.Sprintf("sb-%d", r)
			var wg sync.WaitGroup
			var createErrs [2]error
			for i, db := range []*DB{a, b} {
				wg.Go(func() {
					createErrs[i] = db.CreateSandbox(ctx, &Sandbox{ID: id, Template: fmt.Sprint(i), State: "creating", Runtime: "runc"})
				})
			}
			wg.Wait()
			if (createErrs[0] == nil) == (createErrs[1] == nil) {
				t.Fatalf("round %d: creates gave %v and %v; want exactly one to succeed", r, createErrs[0], createErrs[1])
			}
			for _, err := range createErrs {
				if err != nil && !errors.Is(err, errdefs.ErrConflict) {
					t.Fatalf("round %d: losing create: %v, want a conflict", r, err)
				}
			}
			ra, err := a.GetSandbox(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := b.GetSandbox(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			ra.State, rb.State = "running", "failed"
			var updErrs [2]error
			for i, w := range []struct {
				db *DB
				sb *Sandbox
			}{{a, ra}, {b, rb}} {
				wg.Go(func() { updErrs[i] = w.db.UpdateSandbox(ctx, w.sb) })
			}
			wg.Wait()
			if (updErrs[0] == nil) == (updErrs[1] == nil) {
				t.Fatalf("round %d: updates gave %v and %v; want exactly one to win", r, updErrs[0], updErrs[1])
			}
			winner := "running"
			if updErrs[0] != nil {
				winner = "failed"
			}
			for _, err := range updErrs {
				if err != nil && !errors.Is(err, ErrStale) {
					t.Fatalf("round %d: losing update: %v, want ErrStale", r, err)
				}
			}
			got, err := a.GetSandbox(ctx, id)
			if err != nil || string(got.State) != winner || got.Version != max(ra.Version, rb.Version) {
				t.Fatalf("round %d: stored %+v, %v; want the winner's %s", r, got, err, winner)
			}
		}
	})
}

// TestForNode checks node views: records made through a view are its
// node's; on Postgres another node's view neither sees nor changes them,
// while on SQLite (one server per file) every view sees every record.
func TestForNode(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a, b := open(t, dsn).ForNode("a"), open(t, dsn).ForNode("b")
		shared := IsPostgres(dsn)
		sb := &Sandbox{ID: "sb", Template: "base", State: "running", Runtime: "runc"}
		if err := a.CreateSandbox(ctx, sb); err != nil || sb.Node != "a" {
			t.Fatalf("CreateSandbox: node %q, %v", sb.Node, err)
		}
		if err := a.PutSnapshot(ctx, &Snapshot{ID: "sn", Template: "base", Kind: "files", State: "ready"}); err != nil {
			t.Fatal(err)
		}
		got, err := a.GetSandbox(ctx, "sb")
		if err != nil || got.Node != "a" {
			t.Fatalf("own view: %+v, %v", got, err)
		}
		if sn, err := a.GetSnapshot(ctx, "sn"); err != nil || sn.Node != "a" {
			t.Fatalf("own snapshot: %+v, %v", sn, err)
		}

		_, err = b.GetSandbox(ctx, "sb")
		if shared != errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("other node's GetSandbox: %v (shared database: %v)", err, shared)
		}
		list, err := b.ListSandboxes(ctx)
		if err != nil || shared != (len(list) == 0) {
			t.Fatalf("other node's ListSandboxes: %d, %v", len(list), err)
		}
		snaps, err := b.ListSnapshots(ctx)
		if err != nil || shared != (len(snaps) == 0) {
			t.Fatalf("other node's ListSnapshots: %d, %v", len(snaps), err)
		}
		if _, err := b.GetSnapshot(ctx, "sn"); shared != errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("other node's GetSnapshot: %v", err)
		}
		n, err := b.CountSandboxesByTemplate(ctx, "base")
		if err != nil || shared != (n == 0) {
			t.Fatalf("other node's count: %d, %v", n, err)
		}
		if !shared {
			// On SQLite a node claims every record as its own (a
			// renamed host); on Postgres claiming is refused.
			if err := b.ClaimAll(ctx); err != nil {
				t.Fatal(err)
			}
			if got, err := a.GetSandbox(ctx, "sb"); err != nil || got.Node != "b" {
				t.Fatalf("after ClaimAll: %+v, %v", got, err)
			}
			if sn, err := a.GetSnapshot(ctx, "sn"); err != nil || sn.Node != "b" {
				t.Fatalf("snapshot after ClaimAll: %+v, %v", sn, err)
			}
			return
		}
		if err := b.ClaimAll(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("ClaimAll on Postgres: %v, want refused", err)
		}
		// The other node can neither move nor remove them.
		stale := *got
		stale.State = "failed"
		if err := b.UpdateSandbox(ctx, &stale); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("other node's UpdateSandbox: %v, want not found", err)
		}
		if err := b.DeleteSandbox(ctx, "sb"); err != nil {
			t.Fatal(err)
		}
		if err := b.DeleteSnapshot(ctx, "sn"); err != nil {
			t.Fatal(err)
		}
		if got, err := a.GetSandbox(ctx, "sb"); err != nil || got.State != "running" || got.Version != sb.Version {
			t.Fatalf("after the other node's writes: %+v, %v", got, err)
		}
		if _, err := a.GetSnapshot(ctx, "sn"); err != nil {
			t.Fatalf("snapshot after the other node's delete: %v", err)
		}
		// The whole database's view sees both nodes' records.
		all, err := open(t, dsn).ListSandboxes(ctx)
		if err != nil || len(all) != 1 || all[0].Node != "a" {
			t.Fatalf("unscoped list: %+v, %v", all, err)
		}
	})
}

// TestStatementCache checks that SQLite's statements are prepared once and
// reused, that a query first seen inside a transaction runs there (SQLite's
// one connection is the transaction's: preparing it on the pool would
// wait forever) and is prepared after the commit, and that transactions
// and plain queries interleaving from many goroutines neither deadlock nor
// mix up results.
func TestStatementCache(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, t.TempDir()+"/sbx.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := db.db
	const q = `SELECT count(*) + ? FROM schema_version`
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, q, 41).Scan(&n); err != nil || n != 42 {
		t.Fatalf("in a transaction: %d, %v; want 42", n, err)
	}
	if c.cached(q) != nil {
		t.Fatal("prepared while the transaction held the connection")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	st := c.cached(q)
	if st == nil {
		t.Fatal("not prepared after the commit")
	}
	if err := c.QueryRowContext(ctx, q, 1).Scan(&n); err != nil || n != 2 {
		t.Fatalf("cached: %d, %v; want 2", n, err)
	}
	if c.cached(q) != st {
		t.Fatal("prepared a second time")
	}

	done := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				q := fmt.Sprintf(`SELECT %d + ?`, i%7) // some new, some cached
				var got int
				if i%2 == 0 {
					tx, err := c.BeginTx(ctx, nil)
					if err != nil {
						errs <- err
						return
					}
					defer tx.Rollback()
					if err := tx.QueryRowContext(ctx, q, i).Scan(&got); err != nil {
						errs <- err
						return
					}
					if err := tx.Commit(); err != nil {
						errs <- err
						return
					}
				} else if err := c.QueryRowContext(ctx, q, i).Scan(&got); err != nil {
					errs <- err
					return
				}
				if got != i%7+i {
					errs <- fmt.Errorf("%s with %d = %d", q, i, got)
				}
			}()
		}
		wg.Wait()
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		done <- errors.Join(all...)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("transactions and cached statements deadlocked")
	}
}
