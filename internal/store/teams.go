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

// teamsTable holds the teams: every API key, sandbox and snapshot belongs
// to one (its team column). The limits are the team's quotas; 0 is no
// limit.
const teamsTable = `CREATE TABLE teams (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL UNIQUE,
		max_sandboxes BIGINT NOT NULL DEFAULT 0,
		max_cpus DOUBLE PRECISION NOT NULL DEFAULT 0,
		max_memory_mb BIGINT NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL
	)`

// teamMigrations make the teams table, its default team (which holds
// everything made before teams existed, so that an upgrade changes
// nothing) and the team column of the records that belong to a team.
var teamMigrations = []string{
	teamsTable,
	`INSERT INTO teams (id, name, max_sandboxes, max_cpus, max_memory_mb, created_at) VALUES ('` + DefaultTeamID + `', 'default', 0, 0, 0, 0) ON CONFLICT (id) DO NOTHING`,
	`ALTER TABLE api_keys ADD COLUMN team TEXT NOT NULL DEFAULT '` + DefaultTeamID + `'`,
	`ALTER TABLE sandboxes ADD COLUMN team TEXT NOT NULL DEFAULT '` + DefaultTeamID + `'`,
	`ALTER TABLE snapshots ADD COLUMN team TEXT NOT NULL DEFAULT '` + DefaultTeamID + `'`,
	`ALTER TABLE volumes ADD COLUMN team TEXT NOT NULL DEFAULT '` + DefaultTeamID + `'`,
}

// teamLimitColumns add the team's other quotas (TeamLimits).
var teamLimitColumns = []string{
	`ALTER TABLE teams ADD COLUMN max_disk_mb BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE teams ADD COLUMN max_timeout_sec BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE teams ADD COLUMN max_paused BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE teams ADD COLUMN max_templates BIGINT NOT NULL DEFAULT 0`,
	`ALTER TABLE teams ADD COLUMN max_volume_mb BIGINT NOT NULL DEFAULT 0`,
}

// DefaultTeamName is the name of the default team (id DefaultTeamID).
const DefaultTeamName = "default"

// Team is a stored team and its quotas.
type Team struct {
	ID   string
	Name string
	// Limits are the team's quotas.
	Limits TeamLimits
	// CreatedAt is when the team was made (zero for the default team).
	CreatedAt time.Time
}

// TeamLimits are a team's quotas; 0 means no limit.
type TeamLimits struct {
	// MaxSandboxes bounds the team's running sandboxes.
	MaxSandboxes int64
	// MaxCPUs bounds the vCPUs of the team's running sandboxes together.
	MaxCPUs float64
	// MaxMemoryMB bounds their memory together.
	MaxMemoryMB int64
	// MaxDiskMB bounds the disks of the team's sandboxes that hold one
	// (every sandbox that is not killed: a paused one keeps its disk).
	MaxDiskMB int64
	// MaxTimeoutSec bounds the time to live a sandbox may be given.
	MaxTimeoutSec int64
	// MaxPaused bounds the team's paused sandboxes.
	MaxPaused int64
	// MaxTemplates bounds the team's snapshots (E2B's snapshots are
	// templates of the team), and for the default team, which alone
	// builds templates, its built templates too.
	MaxTemplates int64
	// MaxVolumeMB bounds the sizes of the team's volumes together.
	MaxVolumeMB int64
}

// SandboxLimited reports whether l bounds what the team's sandboxes
// hold together (what TeamUsage counts).
func (l TeamLimits) SandboxLimited() bool {
	return l.MaxSandboxes > 0 || l.MaxCPUs > 0 || l.MaxMemoryMB > 0 || l.MaxDiskMB > 0 || l.MaxPaused > 0
}

// orDefault is team, or the default team when team is empty (records
// made by code that predates teams).
func orDefault(team string) string {
	if team == "" {
		return DefaultTeamID
	}
	return team
}

// CreateTeam inserts team t. A team of its name or id exists: an error
// wrapping errdefs.ErrConflict.
func (s *DB) CreateTeam(ctx context.Context, t *Team) error {
	l := t.Limits
	res, err := s.db.ExecContext(ctx, `INSERT INTO teams (id, name, max_sandboxes, max_cpus, max_memory_mb, created_at,
		max_disk_mb, max_timeout_sec, max_paused, max_templates, max_volume_mb) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		t.ID, t.Name, l.MaxSandboxes, l.MaxCPUs, l.MaxMemoryMB, unixOrZero(t.CreatedAt),
		l.MaxDiskMB, l.MaxTimeoutSec, l.MaxPaused, l.MaxTemplates, l.MaxVolumeMB)
	if err != nil {
		return fmt.Errorf("create team %s: %w", t.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("create team %s: %w", t.Name, err)
	} else if n == 0 {
		return errdefs.New(errdefs.ErrConflict, "team %q exists", t.Name)
	}
	return nil
}

const teamColumns = `id, name, max_sandboxes, max_cpus, max_memory_mb, created_at, max_disk_mb, max_timeout_sec, max_paused, max_templates, max_volume_mb`

func scanTeam(row interface{ Scan(...any) error }) (*Team, error) {
	var t Team
	var created int64
	l := &t.Limits
	if err := row.Scan(&t.ID, &t.Name, &l.MaxSandboxes, &l.MaxCPUs, &l.MaxMemoryMB, &created,
		&l.MaxDiskMB, &l.MaxTimeoutSec, &l.MaxPaused, &l.MaxTemplates, &l.MaxVolumeMB); err != nil {
		return nil, err
	}
	t.CreatedAt = timeOrZero(created)
	return &t, nil
}

// GetTeam returns the team whose id or name is ref, or an error wrapping
// errdefs.ErrNotFound.
func (s *DB) GetTeam(ctx context.Context, ref string) (*Team, error) {
	t, err := scanTeam(s.db.QueryRowContext(ctx, `SELECT `+teamColumns+` FROM teams WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1`, ref, ref, ref))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.New(errdefs.ErrNotFound, "team %q not found", ref)
	}
	if err != nil {
		return nil, fmt.Errorf("get team %s: %w", ref, err)
	}
	return t, nil
}

// ListTeams returns every team, the default one first, then oldest first.
func (s *DB) ListTeams(ctx context.Context) ([]*Team, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+teamColumns+` FROM teams ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	defer rows.Close()
	var out []*Team
	for rows.Next() {
		t, err := scanTeam(rows)
		if err != nil {
			return nil, fmt.Errorf("list teams: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// SetTeamLimits replaces the limits of team id, or returns an error
// wrapping errdefs.ErrNotFound.
func (s *DB) SetTeamLimits(ctx context.Context, id string, l TeamLimits) error {
	res, err := s.db.ExecContext(ctx, `UPDATE teams SET max_sandboxes = ?, max_cpus = ?, max_memory_mb = ?,
		max_disk_mb = ?, max_timeout_sec = ?, max_paused = ?, max_templates = ?, max_volume_mb = ? WHERE id = ?`,
		l.MaxSandboxes, l.MaxCPUs, l.MaxMemoryMB, l.MaxDiskMB, l.MaxTimeoutSec, l.MaxPaused, l.MaxTemplates, l.MaxVolumeMB, id)
	if err != nil {
		return fmt.Errorf("set team %s limits: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.New(errdefs.ErrNotFound, "team %q not found", id)
	}
	return nil
}

// teamObjects are what a team can own that DeleteTeam refuses to orphan:
// names for the message and the count of the team's (in query, whose
// one argument is the team's id). Killed and failed sandboxes are
// history, not objects: they do not hold a team. Secrets go with the team.
var teamObjects = []struct{ one, many, query string }{
	{"API key", "API keys", `SELECT COUNT(*) FROM api_keys WHERE team = ?`},
	{"sandbox", "sandboxes", `SELECT COUNT(*) FROM sandboxes WHERE team = ? AND state NOT IN ('killed', 'failed')`},
	{"snapshot", "snapshots", `SELECT COUNT(*) FROM snapshots WHERE team = ?`},
	{"volume", "volumes", `SELECT COUNT(*) FROM volumes WHERE team = ?`},
	{"webhook", "webhooks", `SELECT COUNT(*) FROM webhooks WHERE team_id = ?`},
}

// DeleteTeam removes team id. The default team, and a team that still
// has keys, live sandboxes, snapshots, volumes or webhooks, cannot be
// removed (an error wrapping errdefs.ErrFailedPrecondition, naming what
// is left); an unknown one gives errdefs.ErrNotFound. The check and the
// delete are one transaction holding the team's lock (see inTeamLock).
func (s *DB) DeleteTeam(ctx context.Context, id string) error {
	if id == DefaultTeamID {
		return errdefs.New(errdefs.ErrFailedPrecondition, "the default team cannot be removed")
	}
	t, err := s.GetTeam(ctx, id)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete team %s: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE teams SET name = name WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete team %s: lock: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.New(errdefs.ErrNotFound, "team %q not found", id)
	}
	var left []string
	for _, o := range teamObjects {
		var n int
		if err := tx.QueryRowContext(ctx, o.query, id).Scan(&n); err != nil {
			return fmt.Errorf("delete team %s: count %s: %w", id, o.many, err)
		}
		switch {
		case n == 1:
			left = append(left, "1 "+o.one)
		case n > 1:
			left = append(left, fmt.Sprintf("%d %s", n, o.many))
		}
	}
	if len(left) > 0 {
		return errdefs.New(errdefs.ErrFailedPrecondition, "team %q still has %s; remove them first", t.Name, strings.Join(left, ", "))
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM teams WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete team %s: %w", id, err)
	}
	// Its secrets go with it: no key can use them any more.
	if _, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE team = ?`, id); err != nil {
		return fmt.Errorf("delete team %s: secrets: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete team %s: commit: %w", id, err)
	}
	return nil
}

// TeamOrDefault is team, or DefaultTeamID when team is empty (a record
// made before teams, or by code that sets none).
func TeamOrDefault(team string) string { return orDefault(team) }
