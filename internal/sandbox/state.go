package sandbox

import (
	"context"
	"fmt"
	"slices"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// State is a sandbox's stored state (see the package doc's Lifecycle).
type State = store.State

// The stored states of a sandbox.
const (
	StateCreating State = "creating"
	StateRunning  State = "running"
	StatePausing  State = "pausing"
	StatePaused   State = "paused"
	StateResuming State = "resuming"
	StateKilled   State = "killed"
	StateFailed   State = "failed"
)

// states lists every state, in lifecycle order.
var states = []State{StateCreating, StateRunning, StatePausing, StatePaused, StateResuming, StateKilled, StateFailed}

// moves is the table of allowed moves: from a state, the states a sandbox
// may go to. Nothing else moves a sandbox. A record's deletion (a finished
// kill, a failed create, a pooled sandbox discarded) is no move: the
// record is gone.
var moves = map[State][]State{
	// Made (running), or killed before it was made. A create that fails
	// deletes its record: there is nothing to report failed.
	StateCreating: {StateRunning, StateKilled},
	// Paused in steps (pausing), or at once when its box is lost and its
	// files are kept (paused); killed; or its box died (failed).
	StateRunning: {StatePausing, StatePaused, StateKilled, StateFailed},
	// The pause completed (paused), or failed with the box still running
	// (running).
	StatePausing: {StatePaused, StateRunning, StateKilled},
	StatePaused:  {StateResuming, StateKilled},
	// The resume completed (running), or failed or was undone (paused).
	StateResuming: {StateRunning, StatePaused, StateKilled},
	// Terminal: a killed record is deleted, a failed one kept until it is
	// deleted (Kill).
	StateKilled: nil,
	StateFailed: nil,
}

// canMove reports whether the table allows a sandbox in from to go to to.
func canMove(from, to State) bool { return slices.Contains(moves[from], to) }

// transition moves sandbox sb to state to: it checks the move against the
// table, applies change (when not nil) to a copy of the record (the fields
// that go with the new state: pause kind, end of life, error), and stores
// it with a compare-and-set on the version sb was read at, together with
// the lifecycle event the move reports (in one transaction: a move is
// never stored without its event, nor an event without its move). Only
// once that has succeeded is sb updated, the event sink told, and the new
// state acted on here: leaving running stops the sandbox's timers,
// entering running arms them and watches its box, entering pausing tells
// the pause hook. A move the table refuses is an
// errdefs.ErrFailedPrecondition; a record another writer moved meanwhile
// is an errdefs.ErrConflict (store.ErrStale), and sb is left as it was.
//
// The caller holds sb's lock (lock); every state change of a sandbox goes
// through here.
func (m *Manager) transition(ctx context.Context, sb *store.Sandbox, to State, change func(*store.Sandbox)) error {
	return m.transitionQuota(ctx, sb, to, change, nil)
}

// transitionQuota is transition with the move stored under the team quota
// check q (quota.go); a nil q is transition.
func (m *Manager) transitionQuota(ctx context.Context, sb *store.Sandbox, to State, change func(*store.Sandbox), q *store.Quota) error {
	from := sb.State
	if !canMove(from, to) {
		return errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q cannot go from %s to %s", sb.ID, from, to)
	}
	next := *sb
	next.State = to
	if change != nil {
		change(&next)
	}
	ev := moveEvent(ctx, &next, from)
	if err := m.db.UpdateSandboxEventQuota(ctx, &next, ev, q); err != nil {
		return fmt.Errorf("sandbox %s: %s to %s: %w", sb.ID, from, to, err)
	}
	*sb = next
	m.stored(ev)
	if from == StateRunning {
		m.timers.stop(sb.ID)
	}
	switch to {
	case StateRunning:
		m.armTimers(sb)
		m.watchBox(sb)
	case StatePausing:
		m.hooks().pause(sb.ID)
	}
	return nil
}

// update stores sb's fields other than its state (its end of life, say)
// with the same compare-and-set as transition, and with it ev when not nil.
func (m *Manager) update(ctx context.Context, sb *store.Sandbox, ev *store.Event) error {
	next := *sb
	if err := m.db.UpdateSandboxEvent(ctx, &next, ev); err != nil {
		return err
	}
	*sb = next
	m.stored(ev)
	return nil
}
