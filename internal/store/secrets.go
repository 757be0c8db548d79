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

// secretsTable holds each team's secrets. sealed is the current version's
// value as the server's key sealed it (internal/secret): the store never
// sees a secret in the clear. A name is unique within its team.
const secretsTable = `CREATE TABLE secrets (
		id TEXT PRIMARY KEY,
		team TEXT NOT NULL,
		name TEXT NOT NULL,
		version BIGINT NOT NULL,
		sealed TEXT NOT NULL,
		metadata TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL,
		UNIQUE (team, name)
	)`

// Secret is a stored secret.
type Secret struct {
	ID   string
	Team string
	// Name is lower-case and unique within Team.
	Name string
	// Version counts the values the secret has had (1 for a new one).
	Version int64
	// Sealed is the current value, encrypted (internal/secret).
	Sealed   string
	Metadata map[string]string
	// CreatedAt and UpdatedAt are when the secret was made and when its
	// value or metadata last changed.
	CreatedAt, UpdatedAt time.Time
}

const secretCols = `id, team, name, version, sealed, metadata, created_at, updated_at`

// CreateSecret inserts secret s. A secret of its name in its team, or of
// its id, exists: an error wrapping errdefs.ErrConflict.
func (s *DB) CreateSecret(ctx context.Context, sec *Secret) error {
	md, err := json.Marshal(nonNilMap(sec.Metadata))
	if err != nil {
		return fmt.Errorf("store secret %s: %w", sec.Name, err)
	}
	sec.Team = orDefault(sec.Team)
	res, err := s.db.ExecContext(ctx, `INSERT INTO secrets (`+secretCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		sec.ID, sec.Team, sec.Name, sec.Version, sec.Sealed, string(md), unixOrZero(sec.CreatedAt), unixOrZero(sec.UpdatedAt))
	if err != nil {
		return fmt.Errorf("store secret %s: %w", sec.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store secret %s: %w", sec.Name, err)
	} else if n == 0 {
		return errdefs.New(errdefs.ErrConflict, "a secret named %q exists", sec.Name)
	}
	return nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func scanSecret(row interface{ Scan(...any) error }) (*Secret, error) {
	var sec Secret
	var md string
	var created, updated int64
	if err := row.Scan(&sec.ID, &sec.Team, &sec.Name, &sec.Version, &sec.Sealed, &md, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(md), &sec.Metadata); err != nil {
		return nil, fmt.Errorf("secret %s metadata: %w", sec.ID, err)
	}
	sec.Metadata = nonNilMap(sec.Metadata)
	sec.CreatedAt, sec.UpdatedAt = timeOrZero(created), timeOrZero(updated)
	return &sec, nil
}

// GetSecret returns team's secret whose id or name is ref, or an error
// wrapping errdefs.ErrNotFound (also for another team's secret).
func (s *DB) GetSecret(ctx context.Context, team, ref string) (*Secret, error) {
	sec, err := scanSecret(s.db.QueryRowContext(ctx, `SELECT `+secretCols+` FROM secrets WHERE team = ? AND (id = ? OR name = ?)`, orDefault(team), ref, ref))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.New(errdefs.ErrNotFound, "secret %q not found", ref)
	}
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", ref, err)
	}
	return sec, nil
}

// ListSecrets returns team's secrets ordered by id, at most limit (0: all)
// of those whose id is after after.
func (s *DB) ListSecrets(ctx context.Context, team, after string, limit int) ([]*Secret, error) {
	q := `SELECT ` + secretCols + ` FROM secrets WHERE team = ? AND id > ? ORDER BY id`
	args := []any{orDefault(team), after}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	return s.querySecrets(ctx, q, args...)
}

// AllSecrets returns every team's secrets (for a key rotation).
func (s *DB) AllSecrets(ctx context.Context) ([]*Secret, error) {
	return s.querySecrets(ctx, `SELECT `+secretCols+` FROM secrets ORDER BY id`)
}

func (s *DB) querySecrets(ctx context.Context, q string, args ...any) ([]*Secret, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	var out []*Secret
	for rows.Next() {
		sec, err := scanSecret(rows)
		if err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		out = append(out, sec)
	}
	return out, rows.Err()
}

// UpdateSecret stores sec's Sealed value, Version, Metadata and UpdatedAt
// if the stored version is still prev: a compare-and-set, so two updates
// at once cannot both claim the same version. A stale prev: an error
// wrapping errdefs.ErrConflict; a missing secret: errdefs.ErrNotFound.
func (s *DB) UpdateSecret(ctx context.Context, sec *Secret, prev int64) error {
	md, err := json.Marshal(nonNilMap(sec.Metadata))
	if err != nil {
		return fmt.Errorf("update secret %s: %w", sec.ID, err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE secrets SET sealed = ?, version = ?, metadata = ?, updated_at = ? WHERE id = ? AND version = ?`,
		sec.Sealed, sec.Version, string(md), unixOrZero(sec.UpdatedAt), sec.ID, prev)
	if err != nil {
		return fmt.Errorf("update secret %s: %w", sec.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update secret %s: %w", sec.ID, err)
	} else if n == 0 {
		if _, err := s.GetSecret(ctx, sec.Team, sec.ID); err != nil {
			return err
		}
		return errdefs.New(errdefs.ErrConflict, "secret %q changed meanwhile", sec.Name)
	}
	return nil
}

// DeleteSecret deletes team's secret id; a missing one: an error wrapping
// errdefs.ErrNotFound.
func (s *DB) DeleteSecret(ctx context.Context, team, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM secrets WHERE team = ? AND id = ?`, orDefault(team), id)
	if err != nil {
		return fmt.Errorf("delete secret %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete secret %s: %w", id, err)
	} else if n == 0 {
		return errdefs.New(errdefs.ErrNotFound, "secret %q not found", id)
	}
	return nil
}
