package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// nodesTable holds one row per node (sbx serve) that has used the
// database: its lease and what it last reported of its machine.
const nodesTable = `CREATE TABLE nodes (
		id TEXT PRIMARY KEY,
		started_at BIGINT NOT NULL,
		renewed_at BIGINT NOT NULL,
		lease_until BIGINT NOT NULL,
		version TEXT NOT NULL,
		commit_id TEXT NOT NULL,
		machine TEXT NOT NULL
	)`

// nodesAdvertise adds the address other nodes of a fleet reach a node at:
// empty for a node that takes no forwarded requests (no --advertise).
const nodesAdvertise = `ALTER TABLE nodes ADD COLUMN advertise TEXT NOT NULL DEFAULT ''`

// nodesDraining adds when a node began draining: 0 for a node that takes
// placements. Renewals leave it as it is.
const nodesDraining = `ALTER TABLE nodes ADD COLUMN draining_since BIGINT NOT NULL DEFAULT 0`

// Node is a node's membership record. A node holds a lease that it renews
// every few seconds; one whose lease has run out (LeaseUntil past) has
// stopped or lost the database.
type Node struct {
	ID string
	// StartedAt is when the node's current run started.
	StartedAt time.Time
	// RenewedAt is the node's last renewal; LeaseUntil is when its
	// lease runs out without another.
	RenewedAt, LeaseUntil time.Time
	// Version and Commit are the build the node runs.
	Version, Commit string
	// Machine is what the node measured of its host at RenewedAt.
	Machine NodeMachine
	// Advertise is the base URL other nodes forward requests to this one
	// at; empty when it takes none.
	Advertise string
	// ReleasedAt is when the node gave its lease up on a clean stop (zero
	// while it runs, or when it stopped without one). A released node is
	// gone, not lost: its boxes keep running for its return.
	ReleasedAt time.Time
	// LostAt is when another node (LostBy) declared this one lost, its
	// lease having lapsed without a release; zero when it is not lost.
	// It stays set until the node, back, has settled its boxes
	// (ClearNodeLost).
	LostAt time.Time
	LostBy string
	// DrainingSince is when the node began draining (it takes no
	// placements); zero when it is not draining.
	DrainingSince time.Time
}

// NodeMachine is a node's host as measured by the node, stored as JSON so
// that later fields need no migration.
type NodeMachine struct {
	CPUCount         int64  `json:"cpuCount"`
	CPUPercent       int64  `json:"cpuPercent"`
	MemoryTotalBytes int64  `json:"memoryTotalBytes"`
	MemoryUsedBytes  int64  `json:"memoryUsedBytes"`
	CPUArchitecture  string `json:"cpuArchitecture"`
	CPUFamily        string `json:"cpuFamily"`
	CPUModel         string `json:"cpuModel"`
	CPUModelName     string `json:"cpuModelName"`
	HugePagesTotal   int64  `json:"hugePagesTotal"`
	HugePagesFree    int64  `json:"hugePagesFree"`
	HugePagesRsvd    int64  `json:"hugePagesReserved"`
	HugePageSize     int64  `json:"hugePageSizeBytes"`
	// Disks are the filesystems that hold the node's data directory.
	Disks []NodeDisk `json:"disks"`
	// Templates are the templates the node has on its disk; Pooled, by
	// template ("" the default one), how many pooled sandboxes its warm
	// pools hold ready. Placement prefers such nodes.
	Templates []string       `json:"templates,omitempty"`
	Pooled    map[string]int `json:"pooled,omitempty"`
}

// NodeDisk is one filesystem of a node.
type NodeDisk struct {
	MountPoint     string `json:"mountPoint"`
	Device         string `json:"device"`
	FilesystemType string `json:"filesystemType"`
	UsedBytes      int64  `json:"usedBytes"`
	TotalBytes     int64  `json:"totalBytes"`
}

const nodeColumns = `id, started_at, renewed_at, lease_until, version, commit_id, machine, advertise, released_at, lost_at, lost_by`

const nodeReadColumns = nodeColumns + `, draining_since`

// RenewNode writes node n's record, creating it on its first renewal.
func (s *DB) RenewNode(ctx context.Context, n *Node) error {
	machine, _ := json.Marshal(n.Machine)
	// The loss columns are the fleet's to set (DeclareNodeLost) and the
	// node's to clear (ClearNodeLost): a renewal leaves them, and reads
	// them back so that a node declared lost learns it.
	_, err := s.db.ExecContext(ctx, `INSERT INTO nodes (`+nodeColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '')
		ON CONFLICT (id) DO UPDATE SET `+upsertSet(`started_at, renewed_at, lease_until, version, commit_id, machine, advertise, released_at`),
		n.ID, unixOrZero(n.StartedAt), unixOrZero(n.RenewedAt), unixOrZero(n.LeaseUntil), n.Version, n.Commit, string(machine), n.Advertise, unixOrZero(n.ReleasedAt))
	if err != nil {
		return fmt.Errorf("renew node %s: %w", n.ID, err)
	}
	var lost int64
	if err := s.db.QueryRowContext(ctx, `SELECT lost_at, lost_by FROM nodes WHERE id = ?`, n.ID).Scan(&lost, &n.LostBy); err != nil {
		return fmt.Errorf("renew node %s: %w", n.ID, err)
	}
	n.LostAt = timeOrZero(lost)
	return nil
}

func scanNode(row interface{ Scan(...any) error }) (*Node, error) {
	var n Node
	var started, renewed, until, released, lost, draining int64
	var machine string
	if err := row.Scan(&n.ID, &started, &renewed, &until, &n.Version, &n.Commit, &machine, &n.Advertise, &released, &lost, &n.LostBy, &draining); err != nil {
		return nil, err
	}
	n.StartedAt, n.RenewedAt, n.LeaseUntil = timeOrZero(started), timeOrZero(renewed), timeOrZero(until)
	n.ReleasedAt, n.LostAt = timeOrZero(released), timeOrZero(lost)
	n.DrainingSince = timeOrZero(draining)
	if err := json.Unmarshal([]byte(machine), &n.Machine); err != nil {
		return nil, fmt.Errorf("node %s machine: %w", n.ID, err)
	}
	return &n, nil
}

// GetNode returns node id's record, or an error wrapping
// errdefs.ErrNotFound.
func (s *DB) GetNode(ctx context.Context, id string) (*Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx, `SELECT `+nodeReadColumns+` FROM nodes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.New(errdefs.ErrNotFound, "node %q not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", id, err)
	}
	return n, nil
}

// ListNodes returns every node's record, by id.
func (s *DB) ListNodes(ctx context.Context) ([]*Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+nodeReadColumns+` FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []*Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// SetNodeDraining marks node id as draining since at (it takes no more
// placements), or, with a zero at, as taking them again. A node with no
// record is errdefs.ErrNotFound.
func (s *DB) SetNodeDraining(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE nodes SET draining_since = ? WHERE id = ?`, unixOrZero(at), id)
	if err != nil {
		return fmt.Errorf("set node %s draining: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("set node %s draining: %w", id, err)
	} else if n == 0 {
		return errdefs.New(errdefs.ErrNotFound, "node %q not found", id)
	}
	return nil
}

// NodeLoad is what one node's sandboxes hold.
type NodeLoad struct {
	// Running counts the running sandboxes; Starting those being created
	// or resumed.
	Running, Starting int64
	// CPUs and MemoryMB are the limits of the running and starting ones,
	// summed.
	CPUs     float64
	MemoryMB int64
}

// NodeLoads returns each node's load, by node name, over the whole
// database (a ForNode view included: every node's load is shared
// knowledge).
func (s *DB) NodeLoads(ctx context.Context) (map[string]NodeLoad, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node, state, count(*), sum(cpus), CAST(sum(memory_mb) AS BIGINT) FROM sandboxes
		WHERE state IN ('running', 'creating', 'resuming') GROUP BY node, state`)
	if err != nil {
		return nil, fmt.Errorf("node loads: %w", err)
	}
	defer rows.Close()
	out := map[string]NodeLoad{}
	for rows.Next() {
		var node, state string
		var n, mem int64
		var cpus float64
		if err := rows.Scan(&node, &state, &n, &cpus, &mem); err != nil {
			return nil, fmt.Errorf("node loads: %w", err)
		}
		l := out[node]
		if state == "running" {
			l.Running += n
		} else {
			l.Starting += n
		}
		l.CPUs += cpus
		l.MemoryMB += mem
		out[node] = l
	}
	return out, rows.Err()
}
