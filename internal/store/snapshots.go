package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

const snapshotsTable = `CREATE TABLE snapshots (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		sandbox_id TEXT NOT NULL,
		template TEXT NOT NULL,
		kind TEXT NOT NULL,
		state TEXT NOT NULL,
		internal INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		size_bytes INTEGER NOT NULL,
		cpus REAL NOT NULL,
		memory_mb INTEGER NOT NULL,
		envd_token TEXT NOT NULL, -- unused, always '': restored agents get their own token
		runtime TEXT NOT NULL
	)`

// Snapshot is a stored snapshot: a sandbox's files (and, on runtimes that
// checkpoint, its memory) at one moment, from which sandboxes can start.
type Snapshot struct {
	ID string
	// Name is an optional second handle, unique among snapshots.
	Name string
	// SandboxID is the sandbox it was taken from (which may be gone).
	SandboxID string
	// Template is the template under the snapshot's layer.
	Template string
	// Kind is "files" or "memory".
	Kind string
	// State is "creating" or "ready".
	State string
	// Internal snapshots are made by a fork and removed with the last
	// sandbox made from them.
	Internal  bool
	CreatedAt time.Time
	SizeBytes int64
	// CPUs and MemoryMB are the source sandbox's limits; a memory image
	// restores into a box of the same size.
	CPUs     float64
	MemoryMB int64
	// Runtime is the source's runtime, the one a memory image restores on.
	Runtime string
	// Node is the node whose disk holds the snapshot's files; set when
	// the record is first stored (by a ForNode view, its node).
	Node string
	// Team is the team the snapshot belongs to (its sandbox's); empty is
	// stored as the default team.
	Team string
}

// snapshotData are the columns a PutSnapshot over a stored snapshot
// rewrites: all but node, which stays the first writer's.
const snapshotData = `id, name, sandbox_id, template, kind, state, internal, created_at, size_bytes, cpus, memory_mb, envd_token, runtime, team`

const snapshotColumns = snapshotData + `, node`

func scanSnapshot(row interface{ Scan(...any) error }) (*Snapshot, error) {
	var s Snapshot
	var created int64
	if err := row.Scan(&s.ID, &s.Name, &s.SandboxID, &s.Template, &s.Kind, &s.State, &s.Internal, &created, &s.SizeBytes, &s.CPUs, &s.MemoryMB, new(string), &s.Runtime, &s.Team, &s.Node); err != nil {
		return nil, err
	}
	s.CreatedAt = timeOrZero(created)
	return &s, nil
}

// PutSnapshot inserts or replaces a snapshot record (keeping the node of
// one that exists).
func (s *DB) PutSnapshot(ctx context.Context, sn *Snapshot) error {
	return s.putSnapshot(ctx, s.db, sn)
}

func (s *DB) putSnapshot(ctx context.Context, ex queryer, sn *Snapshot) error {
	node := s.owner(sn.Node)
	_, err := ex.ExecContext(ctx, `INSERT INTO snapshots (`+snapshotColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET `+upsertSet(snapshotData),
		sn.ID, sn.Name, sn.SandboxID, sn.Template, sn.Kind, sn.State, sn.Internal, unixOrZero(sn.CreatedAt), sn.SizeBytes, sn.CPUs, sn.MemoryMB, "", sn.Runtime, orDefault(sn.Team), node)
	if err != nil {
		return fmt.Errorf("store snapshot %s: %w", sn.ID, err)
	}
	sn.Team = orDefault(sn.Team)
	return nil
}

// GetSnapshot returns the snapshot whose id or name is ref, or an error
// wrapping errdefs.ErrNotFound (also for another node's snapshot, in a
// scoped view: see ForNode).
func (s *DB) GetSnapshot(ctx context.Context, ref string) (*Snapshot, error) {
	cond, args := s.mine()
	args = append(append([]any{ref, ref}, args...), ref)
	sn, err := scanSnapshot(s.db.QueryRowContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots WHERE (id = ? OR (name != '' AND name = ?))`+cond+` ORDER BY id = ? DESC LIMIT 1`, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.New(errdefs.ErrNotFound, "snapshot %q not found", ref)
	}
	if err != nil {
		return nil, fmt.Errorf("get snapshot %s: %w", ref, err)
	}
	return sn, nil
}

// ListSnapshots returns every snapshot, oldest first.
func (s *DB) ListSnapshots(ctx context.Context) ([]*Snapshot, error) {
	cond, args := s.mine()
	rows, err := s.db.QueryContext(ctx, `SELECT `+snapshotColumns+` FROM snapshots WHERE 1 = 1`+cond+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	defer rows.Close()
	var out []*Snapshot
	for rows.Next() {
		sn, err := scanSnapshot(rows)
		if err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		out = append(out, sn)
	}
	return out, rows.Err()
}

// DeleteSnapshot removes snapshot id's record; a missing one is not an
// error.
func (s *DB) DeleteSnapshot(ctx context.Context, id string) error {
	cond, args := s.mine()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM snapshots WHERE id = ?`+cond, append([]any{id}, args...)...); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	return nil
}

// CountSnapshotsByTemplate counts the snapshots layered on template name.
func (s *DB) CountSnapshotsByTemplate(ctx context.Context, name string) (int, error) {
	var n int
	cond, args := s.mine()
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM snapshots WHERE template = ?`+cond, append([]any{name}, args...)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count snapshots of %s: %w", name, err)
	}
	return n, nil
}
