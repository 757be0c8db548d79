// Package store persists sbx's state: sandboxes, snapshots, API keys, nodes,
// lifecycle events with their webhook outbox, and the audit log.
//
// # Engines
//
// The default engine is SQLite (the pure-Go modernc.org/sqlite driver) in a
// file under the data directory, so a single sbx serve needs nothing else
// installed. Several servers share one PostgreSQL database instead
// ([Open] with a postgres:// URL, through pgx).
//
// Both engines run the same SQL: ? placeholders (rebound to $n on
// Postgres in one place, the conn type), types TEXT, BIGINT and DOUBLE
// PRECISION, booleans as BIGINT 0/1, INSERT ... ON CONFLICT for upserts, ids
// made in Go. The first migrations say INTEGER and REAL; they are
// translated to BIGINT and DOUBLE PRECISION on Postgres. Migrations are
// versioned (schema_version) and run by Open; on Postgres all pending ones
// run in one transaction under an advisory lock, so servers starting at
// once apply each exactly once.
//
// # Concurrency
//
// A DB is safe for concurrent use. Records are plain structs; the store does
// not interpret sandbox states beyond filtering on them. A sandbox record
// carries a version that every update advances: [DB.UpdateSandbox] writes
// only over the version it was read at (a compare-and-set in SQL), so two
// writers sharing one database never both move the same sandbox.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// DB is an open sbx database.
type DB struct {
	db *conn
	// node, when set, is the node this view is for (see ForNode).
	node string
}

// Close closes the database (and every view of it from ForNode).
func (s *DB) Close() error { return s.db.Close() }

// ForNode returns a view of the database for the sbx serve node called
// name. Sandboxes and snapshots created through it are recorded as that
// node's. On Postgres, where several nodes share the database, the view
// also reads, counts, updates and deletes only that node's sandboxes and
// snapshots, so that one node's reconcile, timers and box watchers never
// act on another node's boxes. On SQLite (one server per file) it sees
// every record, so that a host renamed since keeps its sandboxes.
func (s *DB) ForNode(name string) *DB { return &DB{db: s.db, node: name} }

// Node is the node this view is for; "" for the whole database.
func (s *DB) Node() string { return s.node }

// ClaimAll records every sandbox and snapshot as this view's node's. It is
// for SQLite, whose one server owns everything in the file (records made
// before nodes had names, or under an earlier host name); on a shared
// Postgres it would take other nodes' records, and is refused.
func (s *DB) ClaimAll(ctx context.Context) error {
	if s.db.pg || s.node == "" {
		return errdefs.New(errdefs.ErrFailedPrecondition, "claiming every record needs a node view of a SQLite store")
	}
	for _, table := range []string{"sandboxes", "snapshots"} {
		if _, err := s.db.ExecContext(ctx, `UPDATE `+table+` SET node = ? WHERE node != ?`, s.node, s.node); err != nil {
			return fmt.Errorf("claim %s for node %s: %w", table, s.node, err)
		}
	}
	return nil
}

// scoped reports whether queries of this view are restricted to its node.
func (s *DB) scoped() bool { return s.node != "" && s.db.pg }

// mine returns the condition (to AND onto a WHERE) and its arguments that
// restrict a query of this view to its node's records; nothing when the
// view is not scoped.
func (s *DB) mine() (string, []any) {
	if !s.scoped() {
		return "", nil
	}
	return " AND node = ?", []any{s.node}
}

// owner returns the node to record on a new record whose Node is node.
func (s *DB) owner(node string) string {
	if s.node != "" {
		return s.node
	}
	return node
}

// migrations are the schema's steps, in order; schema_version counts those
// applied. Append new ones at the end, in portable SQL (see the package
// doc); never edit one that has shipped.
var migrations = []string{
	`CREATE TABLE sandboxes (
		id TEXT PRIMARY KEY,
		template TEXT NOT NULL,
		state TEXT NOT NULL,
		runtime TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		started_at INTEGER NOT NULL,
		end_at INTEGER NOT NULL,
		metadata TEXT NOT NULL,
		env_vars TEXT NOT NULL,
		envd_token TEXT NOT NULL,
		traffic_token TEXT NOT NULL,
		cpus REAL NOT NULL,
		memory_mb INTEGER NOT NULL,
		disk_mb INTEGER NOT NULL,
		pids INTEGER NOT NULL,
		error TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE TABLE api_keys (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		hash TEXT NOT NULL UNIQUE,
		prefix TEXT NOT NULL,
		admin INTEGER NOT NULL,
		created_at INTEGER NOT NULL
	)`,
	// A sandbox's traffic token now exists only when its ports are private
	// (E2B's allowPublicTraffic: false); earlier servers made one for every
	// sandbox but never asked for it, so those sandboxes stay public.
	`UPDATE sandboxes SET traffic_token = ''`,
	// Lifecycle policy and pause state of each sandbox, as JSON
	// (SandboxLife), so later fields need no migration.
	`ALTER TABLE sandboxes ADD COLUMN lifecycle TEXT NOT NULL DEFAULT '{}'`,
	snapshotsTable,
	// The version of each sandbox record, advanced by every update: the
	// compare-and-set of UpdateSandbox. A state alone is not enough to
	// compare on: running, pausing, paused, resuming and running again
	// would let a writer holding the first running overwrite the last.
	`ALTER TABLE sandboxes ADD COLUMN version INTEGER NOT NULL DEFAULT 0`,
	// The node (sbx serve) that owns each sandbox's box and each
	// snapshot's files; '' for records made before nodes had names.
	`ALTER TABLE sandboxes ADD COLUMN node TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE snapshots ADD COLUMN node TEXT NOT NULL DEFAULT ''`,
	// Nodes and their leases (nodes.go).
	nodesTable,
	// Lifecycle events, their webhook deliveries and the audit log
	// (events.go).
	eventsTable, eventsTimeIndex, eventsSandboxIndex, webhooksTable, outboxTable, outboxDueIndex, auditTable, auditTimeIndex,
	// Volumes (volumes.go).
	volumesTable,
	sandboxVolumesTable,
	// Resource samples of sandboxes and of the team (metrics.go).
	metricsTables[0],
	metricsTables[1],
	metricsTables[2],
	// The address other nodes reach each node at (--advertise; nodes.go).
	nodesAdvertise,
	// Teams (teams.go).
	teamMigrations[0], teamMigrations[1], teamMigrations[2], teamMigrations[3], teamMigrations[4], teamMigrations[5],
	// What each sandbox used, per day (usage.go).
	usageTable, usageDayIndex,
	// The dashboard's sign-in sessions (sessions.go).
	sessionsTable, sessionsKeyIndex,
	// The last characters of each key, for its mask (GET /api-keys).
	apiKeySuffix,
	// The teams' other quotas (teams.go).
	teamLimitColumns[0], teamLimitColumns[1], teamLimitColumns[2], teamLimitColumns[3], teamLimitColumns[4],
	// What a team's sandboxes hold, read under its lock (quota.go).
	sandboxTeamIndex,
	// Secrets, sealed with the server's key (secrets.go).
	secretsTable,
	// Node loss: a clean stop's release, and a lapsed node declared lost
	// (nodeloss.go).
	nodesLoss[0], nodesLoss[1], nodesLoss[2],
	// When each node began draining (nodes.go), 0 when it is not.
	nodesDraining,
}

// State is a sandbox's stored state; internal/sandbox defines the values and
// the moves between them.
type State string

// ErrStale is returned (wrapped) by UpdateSandbox when the stored record is
// no longer the version the caller read: another writer moved it. It is an
// errdefs.ErrConflict.
var ErrStale = errdefs.New(errdefs.ErrConflict, "the sandbox record changed meanwhile")

// Sandbox is a sandbox's stored record.
type Sandbox struct {
	ID           string
	Template     string
	State        State
	Runtime      string
	CreatedAt    time.Time
	StartedAt    time.Time
	EndAt        time.Time // zero: no time limit
	Metadata     map[string]string
	EnvVars      map[string]string
	EnvdToken    string
	TrafficToken string // required on requests to the sandbox's ports when set; empty: public
	CPUs         float64
	MemoryMB     int64
	DiskMB       int64
	Pids         int64
	Error        string
	// Life is the sandbox's lifecycle policy and pause state.
	Life SandboxLife
	// Version is the version of the record this was read at (or last
	// written as); UpdateSandbox compares it and advances it.
	Version int64
	// Node is the node (sbx serve) whose runtime holds the sandbox's box.
	// It is set when the record is created (by a ForNode view, its node)
	// and never updated.
	Node string
	// Team is the team the sandbox belongs to; empty is stored as the
	// default team. Set when the record is created, never updated.
	Team string
}

// SandboxLife is the lifecycle part of a sandbox record: what happens on
// timeout, whether it keeps its files across stops, and how it was paused.
type SandboxLife struct {
	// Persistent sandboxes keep their filesystem when their box stops
	// (a timeout pauses them, a lost box leaves them paused).
	Persistent bool `json:"persistent,omitempty"`
	// OnTimeout is "kill" (the default when empty) or "pause".
	OnTimeout string `json:"onTimeout,omitempty"`
	// TimeoutFilesOnly makes a timeout pause keep files only (E2B's
	// autoPauseMemory false); otherwise it keeps memory where it can.
	TimeoutFilesOnly bool `json:"timeoutFilesOnly,omitempty"`
	// AutoResume resumes a paused sandbox on the next request for it.
	AutoResume bool `json:"autoResume,omitempty"`
	// IdlePause, when positive, pauses the sandbox after this long
	// without activity.
	IdlePause time.Duration `json:"idlePause,omitempty"`
	// PauseKind is how a pausing or paused sandbox was paused: "frozen",
	// "memory" or "filesystem"; empty otherwise.
	PauseKind string `json:"pauseKind,omitempty"`
	// PausedAt is when the sandbox was last paused.
	PausedAt time.Time `json:"pausedAt,omitzero"`
	// TTL is the time to live last set for the sandbox (0: no limit); an
	// auto-resume gives it the same again.
	TTL time.Duration `json:"ttl,omitempty"`
	// The options below are set at create and kept for the sandbox's
	// life (pauses, resumes, restarts; a fork copies them).
	//
	// MaskRequestHost, when set, is the Host header requests to the
	// sandbox's ports carry, "${PORT}" replaced by the port (E2B's
	// network.maskRequestHost).
	MaskRequestHost string `json:"maskRequestHost,omitempty"`
	// HTTPSPorts are ports whose servers speak TLS: the proxy reaches
	// them over TLS (E2B's network.httpsPorts).
	HTTPSPorts []int `json:"httpsPorts,omitempty"`
	// IAMTokens are the sandbox's workload identity token definitions
	// (E2B's iam.tokens), by name.
	IAMTokens map[string]IAMToken `json:"iamTokens,omitempty"`
}

// IAMToken is a workload identity token definition of a sandbox.
type IAMToken struct {
	Audience  string `json:"audience"`
	TokenType string `json:"tokenType"`
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOrZero(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// PutSandbox inserts or replaces a sandbox record unconditionally, at
// sb.Version. It is for tools and tests that set a record as it must be;
// the Manager uses CreateSandbox and UpdateSandbox.
func (s *DB) PutSandbox(ctx context.Context, sb *Sandbox) error {
	_, err := s.putSandbox(ctx, s.db, `INSERT`, ` ON CONFLICT (id) DO UPDATE SET `+upsertSet(sandboxColumns), sb)
	return err
}

// CreateSandbox inserts the record of a new sandbox, at sb.Version. A
// record with its id exists already: an error wrapping errdefs.ErrConflict.
func (s *DB) CreateSandbox(ctx context.Context, sb *Sandbox) error {
	n, err := s.putSandbox(ctx, s.db, `INSERT`, ` ON CONFLICT (id) DO NOTHING`, sb)
	if err != nil {
		return err
	}
	if n == 0 {
		return errdefs.New(errdefs.ErrConflict, "sandbox %q exists", sb.ID)
	}
	return nil
}

// putSandbox writes sb with verb (INSERT ...) and suffix, and returns the
// rows written.
func (s *DB) putSandbox(ctx context.Context, ex queryer, verb, suffix string, sb *Sandbox) (int64, error) {
	md, _ := json.Marshal(orEmpty(sb.Metadata))
	env, _ := json.Marshal(orEmpty(sb.EnvVars))
	life, _ := json.Marshal(sb.Life)
	node := s.owner(sb.Node)
	res, err := ex.ExecContext(ctx, verb+` INTO sandboxes
		(`+sandboxColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`+suffix,
		sb.ID, sb.Template, string(sb.State), sb.Runtime, unixOrZero(sb.CreatedAt), unixOrZero(sb.StartedAt), unixOrZero(sb.EndAt),
		string(md), string(env), sb.EnvdToken, sb.TrafficToken, sb.CPUs, sb.MemoryMB, sb.DiskMB, sb.Pids, sb.Error, string(life), sb.Version, node, orDefault(sb.Team))
	if err != nil {
		return 0, fmt.Errorf("store sandbox %s: %w", sb.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store sandbox %s: %w", sb.ID, err)
	}
	if n > 0 {
		sb.Node, sb.Team = node, orDefault(sb.Team)
	}
	return n, nil
}

// UpdateSandbox writes sb over its stored record if that record is still at
// version sb.Version, and advances the version (in sb too). The comparison
// and the write are one SQL statement, so it holds across servers sharing
// the database. A record that moved meanwhile is not written: the error
// wraps ErrStale (an errdefs.ErrConflict); a record that is gone gives
// errdefs.ErrNotFound.
func (s *DB) UpdateSandbox(ctx context.Context, sb *Sandbox) error {
	return s.updateSandbox(ctx, s.db, sb)
}

// updateSandbox is UpdateSandbox on ex, the database or a transaction.
func (s *DB) updateSandbox(ctx context.Context, ex queryer, sb *Sandbox) error {
	md, _ := json.Marshal(orEmpty(sb.Metadata))
	env, _ := json.Marshal(orEmpty(sb.EnvVars))
	life, _ := json.Marshal(sb.Life)
	cond, condArgs := s.mine()
	res, err := ex.ExecContext(ctx, `UPDATE sandboxes SET
		template = ?, state = ?, runtime = ?, created_at = ?, started_at = ?, end_at = ?, metadata = ?, env_vars = ?,
		envd_token = ?, traffic_token = ?, cpus = ?, memory_mb = ?, disk_mb = ?, pids = ?, error = ?, lifecycle = ?,
		team = ?, version = version + 1
		WHERE id = ? AND version = ?`+cond,
		append([]any{sb.Template, string(sb.State), sb.Runtime, unixOrZero(sb.CreatedAt), unixOrZero(sb.StartedAt), unixOrZero(sb.EndAt),
			string(md), string(env), sb.EnvdToken, sb.TrafficToken, sb.CPUs, sb.MemoryMB, sb.DiskMB, sb.Pids, sb.Error, string(life),
			orDefault(sb.Team), sb.ID, sb.Version}, condArgs...)...)
	if err != nil {
		return fmt.Errorf("update sandbox %s: %w", sb.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update sandbox %s: %w", sb.ID, err)
	}
	if n == 0 {
		var one int
		err := ex.QueryRowContext(ctx, `SELECT 1 FROM sandboxes WHERE id = ?`+cond, append([]any{sb.ID}, condArgs...)...).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", sb.ID)
		}
		if err != nil {
			return fmt.Errorf("update sandbox %s: %w", sb.ID, err)
		}
		return fmt.Errorf("update sandbox %s at version %d: %w", sb.ID, sb.Version, ErrStale)
	}
	sb.Version++
	return nil
}

// MoveSandbox records sandbox sb as node to's, storing its state and
// lifecycle with it, by a compare-and-set on both its version and its node (sb.Node,
// the node it is moved from): of two nodes taking one sandbox, exactly one
// wins, and a sandbox changed since sb was read is not moved (ErrStale). It
// works on any view, a ForNode one included: the move is the one write a
// node makes to another node's record.
func (s *DB) MoveSandbox(ctx context.Context, sb *Sandbox, to string) error {
	life, _ := json.Marshal(sb.Life)
	res, err := s.db.ExecContext(ctx, `UPDATE sandboxes SET node = ?, state = ?, lifecycle = ?, version = version + 1
		WHERE id = ? AND version = ? AND node = ?`, to, string(sb.State), string(life), sb.ID, sb.Version, sb.Node)
	return s.moved(ctx, res, err, sb, to, "")
}

// moved finishes a move of sb to node to, whose UPDATE gave res and err:
// on success sb is the record as stored; a move that changed no row is
// errdefs.ErrNotFound when the record is gone, else ErrStale (why, when
// set, says what else the move required).
func (s *DB) moved(ctx context.Context, res sql.Result, err error, sb *Sandbox, to, why string) error {
	if err != nil {
		return fmt.Errorf("move sandbox %s to node %s: %w", sb.ID, to, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("move sandbox %s to node %s: %w", sb.ID, to, err)
	}
	if n == 0 {
		var one int
		err := s.db.QueryRowContext(ctx, `SELECT 1 FROM sandboxes WHERE id = ?`, sb.ID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", sb.ID)
		}
		if err != nil {
			return fmt.Errorf("move sandbox %s: %w", sb.ID, err)
		}
		if why != "" {
			why = " (" + why + ")"
		}
		return fmt.Errorf("move sandbox %s from node %s at version %d%s: %w", sb.ID, sb.Node, sb.Version, why, ErrStale)
	}
	sb.Version++
	sb.Node = to
	return nil
}

// upsertSet returns the SET list of an INSERT ... ON CONFLICT DO UPDATE
// that overwrites every column of columns (a comma-separated list) with the
// inserted row's value.
func upsertSet(columns string) string {
	var set []string
	for _, c := range strings.Split(columns, ",") {
		c = strings.TrimSpace(c)
		set = append(set, c+" = excluded."+c)
	}
	return strings.Join(set, ", ")
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

const sandboxColumns = `id, template, state, runtime, created_at, started_at, end_at, metadata, env_vars, envd_token, traffic_token, cpus, memory_mb, disk_mb, pids, error, lifecycle, version, node, team`

func scanSandbox(row interface{ Scan(...any) error }) (*Sandbox, error) {
	var sb Sandbox
	var created, started, end int64
	var md, env, life string
	if err := row.Scan(&sb.ID, &sb.Template, &sb.State, &sb.Runtime, &created, &started, &end, &md, &env,
		&sb.EnvdToken, &sb.TrafficToken, &sb.CPUs, &sb.MemoryMB, &sb.DiskMB, &sb.Pids, &sb.Error, &life, &sb.Version, &sb.Node, &sb.Team); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(life), &sb.Life); err != nil {
		return nil, fmt.Errorf("sandbox %s lifecycle: %w", sb.ID, err)
	}
	sb.CreatedAt, sb.StartedAt, sb.EndAt = timeOrZero(created), timeOrZero(started), timeOrZero(end)
	if err := json.Unmarshal([]byte(md), &sb.Metadata); err != nil {
		return nil, fmt.Errorf("sandbox %s metadata: %w", sb.ID, err)
	}
	if err := json.Unmarshal([]byte(env), &sb.EnvVars); err != nil {
		return nil, fmt.Errorf("sandbox %s env: %w", sb.ID, err)
	}
	return &sb, nil
}

// GetSandbox returns the record of sandbox id, or an error wrapping
// errdefs.ErrNotFound (also for another node's sandbox, in a scoped view).
func (s *DB) GetSandbox(ctx context.Context, id string) (*Sandbox, error) {
	cond, args := s.mine()
	sb, err := scanSandbox(s.db.QueryRowContext(ctx, `SELECT `+sandboxColumns+` FROM sandboxes WHERE id = ?`+cond, append([]any{id}, args...)...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get sandbox %s: %w", id, err)
	}
	return sb, nil
}

// ListSandboxes returns the sandboxes whose state is one of states (all when
// states is empty), oldest first.
func (s *DB) ListSandboxes(ctx context.Context, states ...State) ([]*Sandbox, error) {
	cond, args := s.mine()
	q := `SELECT ` + sandboxColumns + ` FROM sandboxes WHERE 1 = 1` + cond
	if len(states) > 0 {
		q += ` AND state IN (?` + strings.Repeat(`, ?`, len(states)-1) + `)`
		for _, st := range states {
			args = append(args, string(st))
		}
	}
	q += ` ORDER BY created_at, id`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	defer rows.Close()
	var out []*Sandbox
	for rows.Next() {
		sb, err := scanSandbox(rows)
		if err != nil {
			return nil, fmt.Errorf("list sandboxes: %w", err)
		}
		out = append(out, sb)
	}
	return out, rows.Err()
}

// DeleteSandbox removes sandbox id's record. Deleting a missing record is not
// an error.
func (s *DB) DeleteSandbox(ctx context.Context, id string) error {
	cond, args := s.mine()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sandboxes WHERE id = ?`+cond, append([]any{id}, args...)...); err != nil {
		return fmt.Errorf("delete sandbox %s: %w", id, err)
	}
	return nil
}

// CountSandboxesByTemplate counts the live (not killed or failed) sandboxes
// of template name.
func (s *DB) CountSandboxesByTemplate(ctx context.Context, name string) (int, error) {
	var n int
	cond, args := s.mine()
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sandboxes WHERE template = ? AND state NOT IN ('killed', 'failed')`+cond, append([]any{name}, args...)...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count sandboxes of %s: %w", name, err)
	}
	return n, nil
}

// RetargetTemplate points the live (not killed or failed) sandboxes and
// the snapshots of template from at template to, in one transaction: a
// template renamed under them (a retired base) stays theirs.
func (s *DB) RetargetTemplate(ctx context.Context, from, to string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("retarget template %s: %w", from, err)
	}
	defer tx.Rollback()
	cond, args := s.mine()
	if _, err := tx.ExecContext(ctx, `UPDATE sandboxes SET template = ? WHERE template = ? AND state NOT IN ('killed', 'failed')`+cond, append([]any{to, from}, args...)...); err != nil {
		return fmt.Errorf("retarget sandboxes of %s: %w", from, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE snapshots SET template = ? WHERE template = ?`+cond, append([]any{to, from}, args...)...); err != nil {
		return fmt.Errorf("retarget snapshots of %s: %w", from, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("retarget template %s: %w", from, err)
	}
	return nil
}

// APIKey is a stored API key. Only the key's SHA-256 hash is stored.
type APIKey struct {
	ID     string
	Name   string
	Hash   string
	Prefix string // the first characters of the key, to recognise it
	// Suffix is the last characters of the key (empty for keys made
	// before it was kept), shown in its mask.
	Suffix string
	// Admin keys manage their team's keys; an admin key of the default
	// team manages the server (teams, nodes, every key, the audit log).
	Admin     bool
	CreatedAt time.Time
	// Team is the team the key belongs to; empty is the default team.
	Team string
}

// PutAPIKey stores a new key.
func (s *DB) PutAPIKey(ctx context.Context, k *APIKey) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_keys (id, name, hash, prefix, admin, created_at, team, suffix) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, k.Hash, k.Prefix, k.Admin, k.CreatedAt.UnixNano(), orDefault(k.Team), k.Suffix)
	if err != nil {
		return fmt.Errorf("store api key: %w", err)
	}
	k.Team = orDefault(k.Team)
	return nil
}

// ListAPIKeys returns every key, oldest first.
func (s *DB) ListAPIKeys(ctx context.Context) ([]*APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, hash, prefix, admin, created_at, team, suffix FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	var out []*APIKey
	for rows.Next() {
		var k APIKey
		var created int64
		if err := rows.Scan(&k.ID, &k.Name, &k.Hash, &k.Prefix, &k.Admin, &created, &k.Team, &k.Suffix); err != nil {
			return nil, fmt.Errorf("list api keys: %w", err)
		}
		k.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, &k)
	}
	return out, rows.Err()
}

// apiKeySuffix keeps the last characters of each new key.
const apiKeySuffix = `ALTER TABLE api_keys ADD COLUMN suffix TEXT NOT NULL DEFAULT ''`

// RenameAPIKey sets the name of key id, or returns an error wrapping
// errdefs.ErrNotFound.
func (s *DB) RenameAPIKey(ctx context.Context, id, name string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE api_keys SET name = ? WHERE id = ?`, name, id)
	if err != nil {
		return fmt.Errorf("rename api key %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.New(errdefs.ErrNotFound, "api key %q not found", id)
	}
	return nil
}

// DeleteAPIKey removes key id, or returns an error wrapping
// errdefs.ErrNotFound.
func (s *DB) DeleteAPIKey(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM api_keys WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete api key %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.New(errdefs.ErrNotFound, "api key %q not found", id)
	}
	return nil
}
