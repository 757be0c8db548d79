package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Open opens the database that store names and brings its schema up to
// date. store is one of:
//
//   - a file path, or sqlite:PATH: a SQLite database in that file, created
//     if needed (one server);
//   - postgres://… or postgresql://…: a PostgreSQL database, in any form of
//     URL that pgx accepts (several servers may share it).
func Open(ctx context.Context, store string) (*DB, error) {
	if IsPostgres(store) {
		return openPostgres(ctx, store)
	}
	path := strings.TrimPrefix(strings.TrimPrefix(store, "sqlite:"), "//")
	return openSQLite(ctx, path)
}

// IsPostgres reports whether store (an argument of [Open]) names a
// PostgreSQL database.
func IsPostgres(store string) bool {
	return strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://")
}

// Redact returns store (an argument of [Open]) with any password replaced,
// for logs and error messages.
func Redact(store string) string {
	if !IsPostgres(store) {
		return store
	}
	u, err := url.Parse(store)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// SQLite serialises writers; one connection avoids SQLITE_BUSY storms
	// and keeps reads consistent with the last write.
	db.SetMaxOpenConns(1)
	s := &DB{db: &conn{DB: db}}
	if err := s.migrateSQLite(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", Redact(dsn), err)
	}
	// A server's queries are short; a bounded pool keeps N servers within
	// the database's max_connections (100 by default).
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s: %w", Redact(dsn), err)
	}
	s := &DB{db: &conn{DB: db, pg: true}}
	if err := s.migratePostgres(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// migrateSQLite runs the pending migrations, each in its own transaction.
// One server holds a SQLite file (the data directory's lock), so nothing
// races it.
func (s *DB) migrateSQLite(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	v, err := readVersion(ctx, s.db)
	if err != nil {
		return err
	}
	for i := v; i < len(migrations); i++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := applyMigration(ctx, tx, i, migrations[i]); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
}

// migrationLock is the key of the advisory lock that serialises migrations
// on one Postgres database (advisory locks are per database).
const migrationLock = 0x5b5_0001

// migratePostgres runs the pending migrations in one transaction under an
// advisory lock. Servers starting at once against one database queue on
// the lock; the first applies the migrations, the others then find the
// schema current. Postgres DDL is transactional, so a failed migration
// leaves the schema as it was.
func (s *DB) migratePostgres(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	v, err := readVersion(ctx, tx)
	if err != nil {
		return err
	}
	for i := v; i < len(migrations); i++ {
		if err := applyMigration(ctx, tx, i, postgresDDL(migrations[i])); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// execer is what migrations run on: the database or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readVersion returns the schema version, making its row when there is none.
func readVersion(ctx context.Context, db execer) (int, error) {
	var v int
	err := db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if err == sql.ErrNoRows {
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
			return 0, fmt.Errorf("init schema_version: %w", err)
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read schema_version: %w", err)
	}
	return v, nil
}

// applyMigration runs migration i (0-based) and counts it.
func applyMigration(ctx context.Context, tx execer, i int, ddl string) error {
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("migration %d: %w", i+1, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, i+1); err != nil {
		return fmt.Errorf("migration %d: %w", i+1, err)
	}
	return nil
}

var (
	integerType = regexp.MustCompile(`\bINTEGER\b`)
	realType    = regexp.MustCompile(`\bREAL\b`)
)

// postgresDDL translates a migration's SQLite column types to Postgres:
// the first migrations store int64s (unix-nano times among them) as INTEGER
// and float64s as REAL, which are 64-bit in SQLite but 32-bit in Postgres.
// Portable migrations (BIGINT, DOUBLE PRECISION) pass through unchanged.
func postgresDDL(ddl string) string {
	ddl = integerType.ReplaceAllString(ddl, "BIGINT")
	return realType.ReplaceAllString(ddl, "DOUBLE PRECISION")
}

// conn is the handle every query of the store goes through. The store's
// SQL is written once, with ? placeholders and Go bools for 0/1 columns; on
// Postgres conn rebinds the placeholders to $1, $2, … and the bools to
// 0/1, so the same query text runs on both engines.
type conn struct {
	*sql.DB
	pg bool
	// obs times the statements (observe.go).
	obs observers
	// stmts caches prepared statements by query text on SQLite, whose
	// driver otherwise parses and plans every statement on every call;
	// pgx keeps its own per-connection cache on Postgres.
	stmts stmtCache
}

// stmtCache holds up to maxCachedStmts prepared statements. The store's
// queries are constant strings, so the cache fills once and stays; a
// query built at run time past the bound runs unprepared.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
	// pending are queries first seen inside a transaction, prepared when
	// it ends: SQLite's one connection is the transaction's until then.
	pending map[string]bool
}

const maxCachedStmts = 512

// cached returns the prepared statement for query, or nil.
func (c *conn) cached(query string) *sql.Stmt {
	if c.pg {
		return nil
	}
	c.stmts.mu.Lock()
	defer c.stmts.mu.Unlock()
	return c.stmts.m[query]
}

// stmt returns the cached prepared statement for query, preparing it on
// first use, or nil when it is not to be cached (Postgres, a full cache,
// or a query that fails to prepare, whose error the unprepared call then
// reports). It must not be called inside a transaction (see tx.stmt).
func (c *conn) stmt(ctx context.Context, query string) *sql.Stmt {
	if c.pg {
		return nil
	}
	c.stmts.mu.Lock()
	st, ok := c.stmts.m[query]
	full := len(c.stmts.m) >= maxCachedStmts
	c.stmts.mu.Unlock()
	if ok || full {
		return st
	}
	// Prepared outside the lock: preparing waits for the connection, which
	// a transaction may hold while it looks up its own statements.
	st, err := c.DB.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil
	}
	c.stmts.mu.Lock()
	defer c.stmts.mu.Unlock()
	if prev, ok := c.stmts.m[query]; ok {
		st.Close()
		return prev
	}
	if c.stmts.m == nil {
		c.stmts.m = make(map[string]*sql.Stmt)
	}
	c.stmts.m[query] = st
	return st
}

// prepareLater notes a query that a transaction ran unprepared.
func (c *conn) prepareLater(query string) {
	if c.pg {
		return
	}
	c.stmts.mu.Lock()
	defer c.stmts.mu.Unlock()
	if len(c.stmts.pending) < maxCachedStmts {
		if c.stmts.pending == nil {
			c.stmts.pending = make(map[string]bool)
		}
		c.stmts.pending[query] = true
	}
}

// preparePending prepares the queries transactions noted, once no
// transaction holds the connection.
func (c *conn) preparePending(ctx context.Context) {
	c.stmts.mu.Lock()
	pending := c.stmts.pending
	c.stmts.pending = nil
	c.stmts.mu.Unlock()
	for q := range pending {
		c.stmt(ctx, q)
	}
}

// Close closes the cached statements, then the database.
func (c *conn) Close() error {
	c.stmts.mu.Lock()
	for _, st := range c.stmts.m {
		st.Close()
	}
	c.stmts.m = nil
	c.stmts.mu.Unlock()
	return c.DB.Close()
}

// ExecContext is [sql.DB.ExecContext] with the query rebound.
func (c *conn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	start := time.Now()
	var r sql.Result
	var err error
	if st := c.stmt(ctx, query); st != nil {
		r, err = st.ExecContext(ctx, args...)
	} else {
		r, err = c.DB.ExecContext(ctx, c.rebind(query), c.bindArgs(args)...)
	}
	c.obs.observe("exec", start, err)
	return r, err
}

// QueryContext is [sql.DB.QueryContext] with the query rebound.
func (c *conn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	start := time.Now()
	var r *sql.Rows
	var err error
	if st := c.stmt(ctx, query); st != nil {
		r, err = st.QueryContext(ctx, args...)
	} else {
		r, err = c.DB.QueryContext(ctx, c.rebind(query), c.bindArgs(args)...)
	}
	c.obs.observe("query", start, err)
	return r, err
}

// QueryRowContext is [sql.DB.QueryRowContext] with the query rebound.
func (c *conn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	start := time.Now()
	var r *sql.Row
	if st := c.stmt(ctx, query); st != nil {
		r = st.QueryRowContext(ctx, args...)
	} else {
		r = c.DB.QueryRowContext(ctx, c.rebind(query), c.bindArgs(args)...)
	}
	err := r.Err()
	if err == sql.ErrNoRows {
		err = nil // an answer, not a failure
	}
	c.obs.observe("query", start, err)
	return r
}

// Exec is [sql.DB.Exec] with the query rebound.
func (c *conn) Exec(query string, args ...any) (sql.Result, error) {
	return c.ExecContext(context.Background(), query, args...)
}

// Query is [sql.DB.Query] with the query rebound.
func (c *conn) Query(query string, args ...any) (*sql.Rows, error) {
	return c.QueryContext(context.Background(), query, args...)
}

// QueryRow is [sql.DB.QueryRow] with the query rebound.
func (c *conn) QueryRow(query string, args ...any) *sql.Row {
	return c.QueryRowContext(context.Background(), query, args...)
}

// PrepareContext is [sql.DB.PrepareContext] with the query rebound (the
// statement's arguments are not: pass 0/1 for boolean columns).
func (c *conn) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return c.DB.PrepareContext(ctx, c.rebind(query))
}

// BeginTx is [sql.DB.BeginTx]; the transaction rebinds its queries too.
func (c *conn) BeginTx(ctx context.Context, opts *sql.TxOptions) (*tx, error) {
	start := time.Now()
	t, err := c.DB.BeginTx(ctx, opts)
	c.obs.observe("begin", start, err)
	if err != nil {
		return nil, err
	}
	return &tx{Tx: t, c: c}, nil
}

// Begin is [sql.DB.Begin]; the transaction rebinds its queries too.
func (c *conn) Begin() (*tx, error) { return c.BeginTx(context.Background(), nil) }

// tx is a transaction of a conn, rebinding its queries as conn does.
type tx struct {
	*sql.Tx
	c *conn
}

// stmt is the cached statement for query, or nil after noting query to
// be prepared when the transaction ends.
func (t *tx) stmt(query string) *sql.Stmt {
	if st := t.c.cached(query); st != nil || t.c.pg {
		return st
	}
	t.c.prepareLater(query)
	return nil
}

// Commit is [sql.Tx.Commit]; then the statements the transaction ran
// unprepared are prepared for next time.
func (t *tx) Commit() error {
	err := t.Tx.Commit()
	t.c.preparePending(context.Background())
	return err
}

// Rollback is [sql.Tx.Rollback], preparing as Commit does.
func (t *tx) Rollback() error {
	err := t.Tx.Rollback()
	if err == nil {
		t.c.preparePending(context.Background())
	}
	return err
}

// ExecContext is [sql.Tx.ExecContext] with the query rebound.
func (t *tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(query); st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, t.c.rebind(query), t.c.bindArgs(args)...)
}

// QueryContext is [sql.Tx.QueryContext] with the query rebound.
func (t *tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, t.c.rebind(query), t.c.bindArgs(args)...)
}

// QueryRowContext is [sql.Tx.QueryRowContext] with the query rebound.
func (t *tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, t.c.rebind(query), t.c.bindArgs(args)...)
}

// Exec is [sql.Tx.Exec] with the query rebound.
func (t *tx) Exec(query string, args ...any) (sql.Result, error) {
	return t.ExecContext(context.Background(), query, args...)
}

// Query is [sql.Tx.Query] with the query rebound.
func (t *tx) Query(query string, args ...any) (*sql.Rows, error) {
	return t.QueryContext(context.Background(), query, args...)
}

// QueryRow is [sql.Tx.QueryRow] with the query rebound.
func (t *tx) QueryRow(query string, args ...any) *sql.Row {
	return t.QueryRowContext(context.Background(), query, args...)
}

// PrepareContext is [sql.Tx.PrepareContext] with the query rebound.
func (t *tx) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return t.Tx.PrepareContext(ctx, t.c.rebind(query))
}

// bindArgs turns bool arguments into 0/1 on Postgres, where boolean
// columns are BIGINT as on SQLite (which stores bools as 0/1 itself).
func (c *conn) bindArgs(args []any) []any {
	if !c.pg {
		return args
	}
	var out []any
	for i, a := range args {
		if b, ok := a.(bool); ok {
			if out == nil {
				out = append([]any(nil), args...)
			}
			out[i] = int64(0)
			if b {
				out[i] = int64(1)
			}
		}
	}
	if out == nil {
		return args
	}
	return out
}

// rebind rewrites the ? placeholders of query as $1, $2, … on Postgres,
// leaving question marks in string literals, quoted names and comments.
func (c *conn) rebind(query string) string {
	if !c.pg || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case ch == '\'' || ch == '"':
			// A quoted literal or name runs to the next lone quote; a
			// doubled quote inside is an escaped one, and scanning on
			// from it reopens the quote, which is the same thing.
			j := strings.IndexByte(query[i+1:], ch)
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case ch == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+1])
			i += j
		case ch == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}
