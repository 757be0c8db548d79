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

// nodesLoss adds what node loss needs to the nodes table: when a node
// released its lease on a clean stop, and when (and by whom) a node whose
// lease lapsed was declared lost.
var nodesLoss = []string{
	`ALTER TABLE nodes ADD COLUMN released_at BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE nodes ADD COLUMN lost_at BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE nodes ADD COLUMN lost_by TEXT NOT NULL DEFAULT ''`,
}

// ReleaseNode ends node id's lease at at, on a clean stop: the node is
// gone, not lost, and its records stay its own for its return.
func (s *DB) ReleaseNode(ctx context.Context, id string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE nodes SET lease_until = ?, released_at = ? WHERE id = ?`, unixOrZero(at), unixOrZero(at), id); err != nil {
		return fmt.Errorf("release node %s: %w", id, err)
	}
	return nil
}

// DeclareNodeLost records node id as lost, declared by node by at at, if
// its record still holds the lease that ran out at leaseUntil (no renewal
// since), it did not release it, and no other node declared it first. It
// reports whether this call made the declaration: of several nodes
// declaring one node lost at once, exactly one is told true.
func (s *DB) DeclareNodeLost(ctx context.Context, id, by string, leaseUntil, at time.Time) (bool, error) {
	if !leaseUntil.Before(at) {
		return false, errdefs.New(errdefs.ErrFailedPrecondition, "node %s's lease runs until %s", id, leaseUntil.Format(time.RFC3339))
	}
	res, err := s.db.ExecContext(ctx, `UPDATE nodes SET lost_at = ?, lost_by = ?
		WHERE id = ? AND lost_at = 0 AND released_at = 0 AND lease_until = ?`, unixOrZero(at), by, id, unixOrZero(leaseUntil))
	if err != nil {
		return false, fmt.Errorf("declare node %s lost: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("declare node %s lost: %w", id, err)
	}
	return n == 1, nil
}

// ClearNodeLost ends node id's loss declared at lostAt: the node, back,
// has settled its boxes with what the fleet made of its sandboxes.
func (s *DB) ClearNodeLost(ctx context.Context, id string, lostAt time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE nodes SET lost_at = 0, lost_by = '' WHERE id = ? AND lost_at = ?`, id, unixOrZero(lostAt)); err != nil {
		return fmt.Errorf("clear node %s lost: %w", id, err)
	}
	return nil
}

// NodeSandboxes returns node's sandboxes whose state is one of states (all
// when states is empty), oldest first, whatever this view's node.
func (s *DB) NodeSandboxes(ctx context.Context, node string, states ...State) ([]*Sandbox, error) {
	q := `SELECT ` + sandboxColumns + ` FROM sandboxes WHERE node = ?`
	args := []any{node}
	if len(states) > 0 {
		q += ` AND state IN (?` + strings.Repeat(`, ?`, len(states)-1) + `)`
		for _, st := range states {
			args = append(args, string(st))
		}
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list node %s's sandboxes: %w", node, err)
	}
	defer rows.Close()
	var out []*Sandbox
	for rows.Next() {
		sb, err := scanSandbox(rows)
		if err != nil {
			return nil, fmt.Errorf("list node %s's sandboxes: %w", node, err)
		}
		out = append(out, sb)
	}
	return out, rows.Err()
}

// Settled are the states of a sandbox that holds nothing on its node: a
// node whose sandboxes are all in one of them can be removed.
var Settled = []State{"killed", "failed"}

// DeleteNode removes node id's record, at now. It is refused
// (errdefs.ErrConflict) while the node's lease is live, or while any of
// its sandboxes is not settled (see Settled); the record must be the one
// read (a renewal meanwhile refuses it too).
func (s *DB) DeleteNode(ctx context.Context, id string, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	defer tx.Rollback()
	var until int64
	err = tx.QueryRowContext(ctx, `SELECT lease_until FROM nodes WHERE id = ?`, id).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return errdefs.New(errdefs.ErrNotFound, "node %q not found", id)
	}
	if err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	if timeOrZero(until).After(now) {
		return errdefs.New(errdefs.ErrConflict, "node %s is live (its lease runs until %s); stop it first", id, timeOrZero(until).Format(time.RFC3339))
	}
	var held int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sandboxes WHERE node = ? AND state NOT IN (?, ?)`, id, string(Settled[0]), string(Settled[1])).Scan(&held); err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	if held > 0 {
		return errdefs.New(errdefs.ErrConflict, "node %s still holds %d sandbox(es) that are not settled (killed or failed)", id, held)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE id = ? AND lease_until = ?`, id, until)
	if err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errdefs.New(errdefs.ErrConflict, "node %s renewed its lease meanwhile", id)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	return nil
}

// MoveSandboxFromDown moves sandbox sb to node to, storing its state and
// lifecycle, as MoveSandbox does, but only while sb's node is down: its
// lease lapsed before now and it was declared lost or released it (a
// clean stop). The move is one
// compare-and-set on the record's version and node and on the node's
// record, so of several nodes recovering one sandbox one wins, and none
// takes a sandbox from a node that came back (a renewal moves its lease
// past now) or that another recovery got first. A refused move is
// ErrStale (an errdefs.ErrConflict); a record that is gone is
// errdefs.ErrNotFound.
func (s *DB) MoveSandboxFromDown(ctx context.Context, sb *Sandbox, to string, now time.Time) error {
	life, _ := json.Marshal(sb.Life)
	res, err := s.db.ExecContext(ctx, `UPDATE sandboxes SET node = ?, state = ?, lifecycle = ?, error = ?, version = version + 1
		WHERE id = ? AND version = ? AND node = ?
		AND EXISTS (SELECT 1 FROM nodes WHERE nodes.id = ? AND (nodes.lost_at <> 0 OR nodes.released_at <> 0) AND nodes.lease_until < ?)`,
		to, string(sb.State), string(life), sb.Error, sb.ID, sb.Version, sb.Node, sb.Node, unixOrZero(now))
	return s.moved(ctx, res, err, sb, to, "moved meanwhile, or the node is not down")
}
