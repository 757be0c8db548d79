package store

import (
	"context"
	"fmt"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// sandboxTeamIndex keeps the read of a team's sandboxes (teamUsage), made
// under the team's lock, from scanning every team's.
const sandboxTeamIndex = `CREATE INDEX sandboxes_team ON sandboxes (team, state)`

// TeamUsage is what a team's sandboxes hold together, on every node
// sharing the store.
type TeamUsage struct {
	// Active counts the sandboxes creating, running, pausing or
	// resuming; CPUs and MemoryMB are theirs together.
	Active   int64
	CPUs     float64
	MemoryMB int64
	// DiskMB is the disks of every sandbox that is not killed or failed.
	DiskMB int64
	// Paused counts the paused and pausing sandboxes.
	Paused int64
}

// Quota is a team's quota check made with a sandbox write: Check is given
// the team as stored and what its sandboxes other than Sandbox hold, and
// refuses the write by returning an error.
type Quota struct {
	Team    string
	Sandbox string
	Check   func(t *Team, u TeamUsage) error
}

// TeamUsage returns what team's sandboxes other than except hold, on
// every node.
func (s *DB) TeamUsage(ctx context.Context, team, except string) (TeamUsage, error) {
	return teamUsage(ctx, s.db, team, except)
}

func teamUsage(ctx context.Context, ex queryer, team, except string) (TeamUsage, error) {
	var u TeamUsage
	rows, err := ex.QueryContext(ctx, `SELECT state, cpus, memory_mb, disk_mb FROM sandboxes
		WHERE team = ? AND id != ? AND state NOT IN ('killed', 'failed')`, orDefault(team), except)
	if err != nil {
		return u, fmt.Errorf("team %s usage: %w", team, err)
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var cpus float64
		var mem, disk int64
		if err := rows.Scan(&state, &cpus, &mem, &disk); err != nil {
			return u, fmt.Errorf("team %s usage: %w", team, err)
		}
		u.DiskMB += disk
		switch state {
		case "paused", "pausing":
			u.Paused++
		}
		switch state {
		case "creating", "running", "pausing", "resuming":
			u.Active++
			u.CPUs += cpus
			u.MemoryMB += mem
		}
	}
	return u, rows.Err()
}

// inTeamLock runs write in a transaction that holds q's team's row lock,
// after q.Check passed on what the team holds as of that lock. Writes of
// the same team made this way, by any server sharing the store, are
// serialised, so that no two of them pass a limit together. The lock is
// an UPDATE of the team's row: on Postgres it is a row lock held to the
// end of the transaction (as SELECT … FOR UPDATE), and on SQLite the
// first write takes the database's write lock (as BEGIN IMMEDIATE), in
// one portable statement. A team that does not exist has no limits: write
// runs unchecked.
func (s *DB) inTeamLock(ctx context.Context, q *Quota, write func(ex queryer) error) error {
	return s.lockTeam(ctx, q.Team, func(ex queryer, t *Team) error {
		u, err := teamUsage(ctx, ex, q.Team, q.Sandbox)
		if err != nil {
			return err
		}
		return q.Check(t, u)
	}, write)
}

// lockTeam runs check and then write in one transaction holding team's
// row lock (see inTeamLock); check is skipped for a team that does not
// exist.
func (s *DB) lockTeam(ctx context.Context, team string, check func(ex queryer, t *Team) error, write func(ex queryer) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("team %s quota: %w", team, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE teams SET name = name WHERE id = ?`, orDefault(team))
	if err != nil {
		return fmt.Errorf("team %s quota: lock: %w", team, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		t, err := scanTeam(tx.QueryRowContext(ctx, `SELECT `+teamColumns+` FROM teams WHERE id = ?`, orDefault(team)))
		if err != nil {
			return fmt.Errorf("team %s quota: %w", team, err)
		}
		if err := check(tx, t); err != nil {
			return err
		}
	}
	if err := write(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("team %s quota: commit: %w", team, err)
	}
	return nil
}

// CreateSandboxQuota is CreateSandbox made under q (see Quota); a nil q
// is CreateSandbox.
func (s *DB) CreateSandboxQuota(ctx context.Context, sb *Sandbox, q *Quota) error {
	if q == nil {
		return s.CreateSandbox(ctx, sb)
	}
	next := *sb
	err := s.inTeamLock(ctx, q, func(ex queryer) error {
		n, err := s.putSandbox(ctx, ex, `INSERT`, ` ON CONFLICT (id) DO NOTHING`, &next)
		if err == nil && n == 0 {
			err = errdefs.New(errdefs.ErrConflict, "sandbox %q exists", sb.ID)
		}
		return err
	})
	if err != nil {
		return err
	}
	*sb = next
	return nil
}

// UpdateSandboxEventQuota is UpdateSandboxEvent made under q (see
// Quota); a nil q is UpdateSandboxEvent.
func (s *DB) UpdateSandboxEventQuota(ctx context.Context, sb *Sandbox, ev *Event, q *Quota) error {
	if q == nil {
		return s.UpdateSandboxEvent(ctx, sb, ev)
	}
	next := *sb
	err := s.inTeamLock(ctx, q, func(ex queryer) error {
		if err := s.updateSandbox(ctx, ex, &next); err != nil {
			return err
		}
		if ev != nil {
			return putEvent(ctx, ex, ev)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sb.Version = next.Version
	return nil
}

// TeamSnapshots counts team's snapshots, on every node, but those sbx
// takes for itself (forks').
func (s *DB) TeamSnapshots(ctx context.Context, team string) (int64, error) {
	return teamSnapshots(ctx, s.db, team)
}

func teamSnapshots(ctx context.Context, ex queryer, team string) (int64, error) {
	var n int64
	err := ex.QueryRowContext(ctx, `SELECT count(*) FROM snapshots WHERE team = ? AND internal = 0`, orDefault(team)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count team %s snapshots: %w", team, err)
	}
	return n, nil
}

// ReserveSnapshot is PutSnapshot made under the lock of sn's team (see
// inTeamLock): check is given the team and its snapshots but sbx's own
// (TeamSnapshots), and refuses the insert by returning an error, so that
// racing snapshot creates, on any server sharing the store, never pass
// the team's limit together. A nil check is PutSnapshot.
func (s *DB) ReserveSnapshot(ctx context.Context, sn *Snapshot, check func(t *Team, snapshots int64) error) error {
	if check == nil {
		return s.PutSnapshot(ctx, sn)
	}
	return s.lockTeam(ctx, sn.Team, func(ex queryer, t *Team) error {
		n, err := teamSnapshots(ctx, ex, t.ID)
		if err != nil {
			return err
		}
		return check(t, n)
	}, func(ex queryer) error { return s.putSnapshot(ctx, ex, sn) })
}

// TeamVolumeMB sums the sizes of team's volumes.
func (s *DB) TeamVolumeMB(ctx context.Context, team string) (int64, error) {
	return teamVolumeMB(ctx, s.db, team)
}

func teamVolumeMB(ctx context.Context, ex queryer, team string) (int64, error) {
	var n int64
	err := ex.QueryRowContext(ctx, `SELECT COALESCE(SUM(size_mb), 0) FROM volumes WHERE team = ?`, orDefault(team)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sum team %s volumes: %w", team, err)
	}
	return n, nil
}

// CreateVolumeQuota is CreateVolume made under the lock of v's team:
// check is given the team and the sizes of its volumes together, and
// refuses the insert by returning an error, so that racing creates never
// pass the team's limit together. A nil check is CreateVolume.
func (s *DB) CreateVolumeQuota(ctx context.Context, v *Volume, check func(t *Team, usedMB int64) error) error {
	if check == nil {
		return s.CreateVolume(ctx, v)
	}
	err := s.lockTeam(ctx, v.Team, func(ex queryer, t *Team) error {
		used, err := teamVolumeMB(ctx, ex, t.ID)
		if err != nil {
			return err
		}
		return check(t, used)
	}, func(ex queryer) error { return createVolume(ctx, ex, v) })
	if err == nil {
		v.Team = orDefault(v.Team)
	}
	return err
}
