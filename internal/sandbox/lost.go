package sandbox

import (
	"context"
	"fmt"
	"os"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// LostStore is what SettleLost needs of the shared store (the whole
// database, not a node's view: the sandbox is another node's).
type LostStore interface {
	UpdateSandboxEvent(ctx context.Context, sb *store.Sandbox, ev *store.Event) error
}

// SettleLost records sandbox sb of a node declared lost as ended, for
// reason ("node n2 lost"): a running one failed, with reason as its error;
// one being created, paused or resumed killed (a create that never ran is
// retried by whoever placed it, so it must not come back). It makes the
// move the same way transition does (the table, then one compare-and-set
// with its event), but acts on no box: the box is on the lost node, which
// kills it when it comes back (RemoteUse.KillLost). A persistent sandbox
// that ran is the caller's to recover elsewhere first (RemoteUse.Recover);
// SettleLost fails it when that cannot be done. It returns the event
// stored, or nil with no error when sb needs no move (paused: its copy
// waits in the object store, or already ended); a record another node
// settled first is an errdefs.ErrConflict.
func SettleLost(ctx context.Context, db LostStore, sb *store.Sandbox, reason string) (*store.Event, error) {
	var to State
	switch sb.State {
	case StateRunning:
		to = StateFailed
	case StateCreating, StatePausing, StateResuming:
		to = StateKilled
	default:
		return nil, nil
	}
	if !canMove(sb.State, to) {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q cannot go from %s to %s", sb.ID, sb.State, to)
	}
	next := *sb
	next.State = to
	if to == StateFailed {
		next.Error = reason
	}
	ev := moveEvent(withReason(ctx, reason), &next, sb.State)
	if err := db.UpdateSandboxEvent(ctx, &next, ev); err != nil {
		return nil, fmt.Errorf("sandbox %s of a lost node: %s to %s: %w", sb.ID, sb.State, to, err)
	}
	*sb = next
	return ev, nil
}

// KillLost destroys the boxes of this node's sandboxes that the fleet
// ended while the node was away (declared lost, or cut off from the
// store): a failed record whose box still runs loses its box, a killed
// one its box and its record. foreign lists sandboxes whose boxes are
// here but whose records another node now owns; they lose their boxes
// too. The server calls it at start, before Reconcile and before serving,
// and when a renewal tells it that it was declared lost.
func (r RemoteUse) KillLost(ctx context.Context, foreign []*store.Sandbox) (int, error) {
	m := r.m
	ctx = withReason(ctx, reasonRestart)
	all, err := m.db.ListSandboxes(ctx, StateFailed, StateKilled)
	if err != nil {
		return 0, err
	}
	killed := 0
	for _, sb := range all {
		if !m.killLost(ctx, sb, true) {
			continue
		}
		killed++
	}
	for _, sb := range foreign {
		if m.killLost(ctx, sb, false) {
			killed++
		}
	}
	return killed, nil
}

// killLost destroys sb's box when one is here; mine says whether sb's
// record is this node's (a killed one is then deleted).
func (m *Manager) killLost(ctx context.Context, sb *store.Sandbox, mine bool) bool {
	unlock := m.lock(sb.ID)
	defer unlock()
	if _, err := os.Stat(m.dir(sb.ID)); err != nil {
		return false // nothing of it here
	}
	if mine && sb.State == StateFailed {
		rt, err := m.runtimeOf(sb)
		if err != nil {
			return false
		}
		st, err := rt.State(ctx, sb.ID)
		if err != nil || !st.Running {
			return false // a failed sandbox's box that ended by itself
		}
	}
	m.timers.stop(sb.ID)
	m.release(ctx, sb)
	if mine && sb.State == StateKilled {
		if err := m.db.DeleteSandbox(ctx, sb.ID); err != nil {
			m.log.Error("delete a killed sandbox's record", "sandbox_id", sb.ID, "err", err)
		}
	}
	m.hooks().gone(sb.ID)
	m.log.Warn("killed the box of a sandbox the fleet ended while this node was away", "sandbox_id", sb.ID, "state", sb.State, "error", sb.Error)
	return true
}
