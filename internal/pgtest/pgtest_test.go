package pgtest

import (
	"context"
	"database/sql"
	"sync"
	"testing"
)

// TestPostgres checks that concurrent calls each get a database of their
// own on a running cluster, empty and writable.
func TestPostgres(t *testing.T) {
	var wg sync.WaitGroup
	dsns := make([]string, 3)
	for i := range dsns {
		wg.Go(func() { dsns[i] = Postgres(t) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := map[string]bool{}
	for _, dsn := range dsns {
		if seen[dsn] {
			t.Fatalf("two calls got %s", dsn)
		}
		seen[dsn] = true
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ctx := context.Background()
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s: %d tables, %v; want an empty database", dsn, n, err)
		}
		if _, err := db.ExecContext(ctx, `CREATE TABLE x (id TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
	}
}
