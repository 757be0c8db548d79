package sandbox

import (
	"context"
	"errors"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// A team's quotas (store.TeamLimits) on what its sandboxes hold together
// are checked in the store write that makes a sandbox hold it, under the
// team's row lock (store.Quota): the create's insert, the move to
// resuming, a pooled box's hand-over, the move to pausing. Writes of one
// team are serialised there across every server sharing the store, so
// racing creates on several nodes never pass a limit together. Refusals
// are errdefs.ErrResourceExhausted (429, which the e2b SDKs raise as
// RateLimitError) naming the limit. A sandbox counts as active from
// creating to pausing, a paused one as kept, and its disk until it is
// killed.

// quotaOp is what a write does to what the team holds.
type quotaOp int

const (
	// quotaStart is a new active sandbox with a new disk: a create, a
	// fork's copy, a pooled box handed to the team.
	quotaStart quotaOp = iota
	// quotaResume makes a paused sandbox active again.
	quotaResume
	// quotaPause keeps a running sandbox paused.
	quotaPause
)

// checkTeam refuses sb's op when team t's sandboxes other than sb, holding
// u, and sb would pass one of t's limits.
func checkTeam(t *store.Team, u store.TeamUsage, sb *store.Sandbox, op quotaOp) error {
	l := t.Limits
	switch op {
	case quotaStart, quotaResume:
		n, cpus, mem := u.Active+1, u.CPUs+sb.CPUs, u.MemoryMB+sb.MemoryMB
		if l.MaxSandboxes > 0 && n > l.MaxSandboxes {
			return errdefs.New(errdefs.ErrResourceExhausted, "team %q is at its limit of %d concurrent sandboxes (max-sandboxes); kill or pause one first", t.Name, l.MaxSandboxes)
		}
		if l.MaxCPUs > 0 && cpus > l.MaxCPUs+1e-9 {
			return errdefs.New(errdefs.ErrResourceExhausted, "team %q's sandboxes would have %v vCPUs, above its limit of %v (max-cpus)", t.Name, cpus, l.MaxCPUs)
		}
		if l.MaxMemoryMB > 0 && mem > l.MaxMemoryMB {
			return errdefs.New(errdefs.ErrResourceExhausted, "team %q's sandboxes would have %d MiB of memory, above its limit of %d MiB (max-memory-mb)", t.Name, mem, l.MaxMemoryMB)
		}
		if op == quotaStart && l.MaxDiskMB > 0 && u.DiskMB+sb.DiskMB > l.MaxDiskMB {
			return errdefs.New(errdefs.ErrResourceExhausted, "team %q's sandboxes would have %d MiB of disk, above its limit of %d MiB (max-disk-mb); kill one first", t.Name, u.DiskMB+sb.DiskMB, l.MaxDiskMB)
		}
	case quotaPause:
		if l.MaxPaused > 0 && u.Paused+1 > l.MaxPaused {
			return errdefs.New(errdefs.ErrResourceExhausted, "team %q is at its limit of %d paused sandboxes (max-paused); kill or resume one first", t.Name, l.MaxPaused)
		}
	}
	return nil
}

// quota returns the check that sb's op is stored under (nil when sb's
// team bounds nothing its sandboxes hold, so the write takes no lock).
func (m *Manager) quota(ctx context.Context, sb *store.Sandbox, op quotaOp) (*store.Quota, error) {
	team := store.TeamOrDefault(sb.Team)
	t, err := m.db.GetTeam(ctx, team)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !t.Limits.SandboxLimited() {
		return nil, nil
	}
	want := *sb
	return &store.Quota{Team: team, Sandbox: sb.ID, Check: func(t *store.Team, u store.TeamUsage) error {
		return checkTeam(t, u, &want, op)
	}}, nil
}

// checkQuota is the quota check of sb's op made without the team's lock:
// a create refused by it is refused before a pooled box is touched. The
// write that follows checks again, under the lock.
func (m *Manager) checkQuota(ctx context.Context, sb *store.Sandbox, op quotaOp) error {
	q, err := m.quota(ctx, sb, op)
	if err != nil || q == nil {
		return err
	}
	t, err := m.db.GetTeam(ctx, q.Team)
	if err != nil {
		return err
	}
	u, err := m.db.TeamUsage(ctx, q.Team, sb.ID)
	if err != nil {
		return err
	}
	return q.Check(t, u)
}

// teamTimeout refuses a time to live d (0: none) for a sandbox of team
// that passes the team's longest timeout (max-timeout), as E2B does: 400.
func (m *Manager) teamTimeout(ctx context.Context, team string, d time.Duration) error {
	t, err := m.db.GetTeam(ctx, store.TeamOrDefault(team))
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	max := time.Duration(t.Limits.MaxTimeoutSec) * time.Second
	if max > 0 && (d == 0 || d > max) {
		return errdefs.New(errdefs.ErrInvalidArgument, "timeout must be between 1s and team %q's limit of %s (max-timeout)", t.Name, max)
	}
	return nil
}

// teamDefaultTimeout is d, the server's default time to live, cut to the
// longest timeout of team when that is shorter.
func (m *Manager) teamDefaultTimeout(ctx context.Context, team string, d time.Duration) time.Duration {
	t, err := m.db.GetTeam(ctx, store.TeamOrDefault(team))
	if err != nil {
		return d
	}
	if max := time.Duration(t.Limits.MaxTimeoutSec) * time.Second; max > 0 && (d == 0 || d > max) {
		return max
	}
	return d
}
