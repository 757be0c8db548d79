package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

const volumesTable = `CREATE TABLE volumes (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL UNIQUE,
		size_mb BIGINT NOT NULL,
		created_at BIGINT NOT NULL
	)`

// sandboxVolumesTable records the volumes each sandbox mounts: a sandbox
// keeps its mounts across pause, resume and server restarts, and a volume
// mounted by a sandbox that is not over cannot be destroyed. Rows of
// sandboxes whose record is gone are ignored (and dropped with their
// volume).
const sandboxVolumesTable = `CREATE TABLE sandbox_volumes (
		sandbox_id TEXT NOT NULL,
		volume_id TEXT NOT NULL,
		path TEXT NOT NULL,
		PRIMARY KEY (sandbox_id, path)
	)`

// Volume is a stored volume: a directory with a size quota that lives
// until destroyed and that sandboxes mount.
type Volume struct {
	ID string
	// Name is unique among volumes; creates name volumes to mount.
	Name      string
	SizeMB    int64
	CreatedAt time.Time
	// Team is the team the volume belongs to; empty is stored as the
	// default team.
	Team string
}

// VolumeMount is one volume mounted in a sandbox.
type VolumeMount struct {
	VolumeID string
	// Name is the volume's name (read from the volumes table).
	Name string
	// Path is where the volume is mounted in the sandbox.
	Path string
}

// CreateVolume inserts volume v. A volume of its name or id exists: an
// error wrapping errdefs.ErrConflict.
func (s *DB) CreateVolume(ctx context.Context, v *Volume) error {
	if err := createVolume(ctx, s.db, v); err != nil {
		return err
	}
	v.Team = orDefault(v.Team)
	return nil
}

func createVolume(ctx context.Context, ex queryer, v *Volume) error {
	res, err := ex.ExecContext(ctx, `INSERT INTO volumes (id, name, size_mb, created_at, team) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		v.ID, v.Name, v.SizeMB, unixOrZero(v.CreatedAt), orDefault(v.Team))
	if err != nil {
		return fmt.Errorf("store volume %s: %w", v.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store volume %s: %w", v.Name, err)
	} else if n == 0 {
		return errdefs.New(errdefs.ErrConflict, "a volume named %q exists", v.Name)
	}
	return nil
}

func scanVolume(row interface{ Scan(...any) error }) (*Volume, error) {
	var v Volume
	var created int64
	if err := row.Scan(&v.ID, &v.Name, &v.SizeMB, &created, &v.Team); err != nil {
		return nil, err
	}
	v.CreatedAt = timeOrZero(created)
	return &v, nil
}

// GetVolume returns volume id, or an error wrapping errdefs.ErrNotFound.
func (s *DB) GetVolume(ctx context.Context, id string) (*Volume, error) {
	return s.getVolume(ctx, `id`, id)
}

// GetVolumeByName returns the volume named name, or an error wrapping
// errdefs.ErrNotFound.
func (s *DB) GetVolumeByName(ctx context.Context, name string) (*Volume, error) {
	return s.getVolume(ctx, `name`, name)
}

func (s *DB) getVolume(ctx context.Context, col, val string) (*Volume, error) {
	v, err := scanVolume(s.db.QueryRowContext(ctx, `SELECT id, name, size_mb, created_at, team FROM volumes WHERE `+col+` = ?`, val))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.New(errdefs.ErrNotFound, "volume %q not found", val)
	}
	if err != nil {
		return nil, fmt.Errorf("get volume %s: %w", val, err)
	}
	return v, nil
}

// ListVolumes returns every volume, oldest first.
func (s *DB) ListVolumes(ctx context.Context) ([]*Volume, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, size_mb, created_at, team FROM volumes ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	defer rows.Close()
	var out []*Volume
	for rows.Next() {
		v, err := scanVolume(rows)
		if err != nil {
			return nil, fmt.Errorf("list volumes: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// VolumeUsers returns the ids of the sandboxes that mount volume id and
// whose state is not one of over (the terminal states).
func (s *DB) VolumeUsers(ctx context.Context, id string, over ...State) ([]string, error) {
	q := `SELECT sv.sandbox_id FROM sandbox_volumes sv JOIN sandboxes s ON s.id = sv.sandbox_id WHERE sv.volume_id = ?`
	args := []any{id}
	if len(over) > 0 {
		q += ` AND s.state NOT IN (?` + strings.Repeat(`, ?`, len(over)-1) + `)`
		for _, st := range over {
			args = append(args, string(st))
		}
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY sv.sandbox_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("volume %s users: %w", id, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var sid string
		if err := rows.Scan(&sid); err != nil {
			return nil, fmt.Errorf("volume %s users: %w", id, err)
		}
		out = append(out, sid)
	}
	return out, rows.Err()
}

// DeleteVolume deletes volume id's record and every mount of it.
func (s *DB) DeleteVolume(ctx context.Context, id string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM volumes WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.New(errdefs.ErrNotFound, "volume %q not found", id)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM sandbox_volumes WHERE volume_id = ?`, id); err != nil {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	return tx.Commit()
}

// SetSandboxVolumes records the volumes sandbox id mounts (replacing any
// recorded before).
func (s *DB) SetSandboxVolumes(ctx context.Context, id string, mounts []VolumeMount) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sandbox %s volumes: %w", id, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM sandbox_volumes WHERE sandbox_id = ?`, id); err != nil {
		return fmt.Errorf("sandbox %s volumes: %w", id, err)
	}
	for _, m := range mounts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sandbox_volumes (sandbox_id, volume_id, path) VALUES (?, ?, ?)`, id, m.VolumeID, m.Path); err != nil {
			return fmt.Errorf("sandbox %s volumes: %w", id, err)
		}
	}
	return tx.Commit()
}

// SandboxVolumes returns the volumes sandbox id mounts, by path.
func (s *DB) SandboxVolumes(ctx context.Context, id string) ([]VolumeMount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT sv.volume_id, v.name, sv.path FROM sandbox_volumes sv
		JOIN volumes v ON v.id = sv.volume_id WHERE sv.sandbox_id = ? ORDER BY sv.path`, id)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s volumes: %w", id, err)
	}
	defer rows.Close()
	var out []VolumeMount
	for rows.Next() {
		var m VolumeMount
		if err := rows.Scan(&m.VolumeID, &m.Name, &m.Path); err != nil {
			return nil, fmt.Errorf("sandbox %s volumes: %w", id, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// AllSandboxVolumes returns the volumes every sandbox mounts, by sandbox
// id and path: one query for a listing.
func (s *DB) AllSandboxVolumes(ctx context.Context) (map[string][]VolumeMount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT sv.sandbox_id, sv.volume_id, v.name, sv.path FROM sandbox_volumes sv
		JOIN volumes v ON v.id = sv.volume_id ORDER BY sv.sandbox_id, sv.path`)
	if err != nil {
		return nil, fmt.Errorf("sandbox volumes: %w", err)
	}
	defer rows.Close()
	out := map[string][]VolumeMount{}
	for rows.Next() {
		var id string
		var m VolumeMount
		if err := rows.Scan(&id, &m.VolumeID, &m.Name, &m.Path); err != nil {
			return nil, fmt.Errorf("sandbox volumes: %w", err)
		}
		out[id] = append(out[id], m)
	}
	return out, rows.Err()
}
