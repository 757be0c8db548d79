package sandbox

import (
	"context"
	"errors"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// checkQuota refuses sb (about to be created or resumed) when its team's
// running sandboxes, with it, would pass one of the team's limits
// (store.TeamLimits: sandboxes, vCPUs, memory). A sandbox counts from
// creating to pausing; a paused one does not. The error is an
// errdefs.ErrResourceExhausted (429, which the e2b SDKs raise as
// RateLimitError) naming the limit. Like checkCapacity, the caller holds
// m.capacity until sb's new state is stored, so that racing creates on
// this server cannot pass a limit together; servers sharing a Postgres
// store each count only their own sandboxes (a ForNode view).
func (m *Manager) checkQuota(ctx context.Context, sb *Sandbox) error {
	team := store.TeamOrDefault(sb.Team)
	t, err := m.db.GetTeam(ctx, team)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	l := t.Limits
	if l.MaxSandboxes <= 0 && l.MaxCPUs <= 0 && l.MaxMemoryMB <= 0 {
		return nil
	}
	all, err := m.db.ListSandboxes(ctx, StateCreating, StateRunning, StatePausing, StateResuming)
	if err != nil {
		return err
	}
	n, cpus, mem := int64(1), sb.CPUs, sb.MemoryMB
	for _, o := range all {
		if o.ID == sb.ID || store.TeamOrDefault(o.Team) != team {
			continue
		}
		n++
		cpus += o.CPUs
		mem += o.MemoryMB
	}
	if l.MaxSandboxes > 0 && n > l.MaxSandboxes {
		return errdefs.New(errdefs.ErrResourceExhausted, "team %q is at its limit of %d concurrent sandboxes (max-sandboxes); kill or pause one first", t.Name, l.MaxSandboxes)
	}
	if l.MaxCPUs > 0 && cpus > l.MaxCPUs+1e-9 {
		return errdefs.New(errdefs.ErrResourceExhausted, "team %q's sandboxes would have %v vCPUs, above its limit of %v (max-cpus)", t.Name, cpus, l.MaxCPUs)
	}
	if l.MaxMemoryMB > 0 && mem > l.MaxMemoryMB {
		return errdefs.New(errdefs.ErrResourceExhausted, "team %q's sandboxes would have %d MiB of memory, above its limit of %d MiB (max-memory-mb)", t.Name, mem, l.MaxMemoryMB)
	}
	return nil
}
