package sandbox

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// EventSink is told of each lifecycle event once it is stored with the
// state change it reports (the webhook dispatcher wakes to deliver it).
// Stored is called with the sandbox's lock held and must not block.
type EventSink interface {
	Stored(ev *store.Event)
}

// Reasons of events (wire.SandboxEventData.Reason) that are not a
// failure's message.
const (
	reasonRequest = "request"
	reasonTimeout = "timeout"
	reasonIdle    = "idle"
	reasonRestart = "restart"
)

type reasonKey struct{}

// withReason marks ctx's lifecycle moves as caused by reason (timeout,
// idle, ...); unmarked moves are an API request's.
func withReason(ctx context.Context, reason string) context.Context {
	return context.WithValue(ctx, reasonKey{}, reason)
}

func reasonOf(ctx context.Context) string {
	if r, ok := ctx.Value(reasonKey{}).(string); ok {
		return r
	}
	return reasonRequest
}

// eventOfMove is the event type a move from one state to another reports,
// or "" for the steps in between (pausing, resuming) and the undoing of
// one (a failed pause or resume leaves the sandbox as it was).
func eventOfMove(from, to State) string {
	switch {
	case from == StateCreating && to == StateRunning:
		return wire.EventCreated
	case to == StatePaused && (from == StatePausing || from == StateRunning):
		return wire.EventPaused
	case from == StateResuming && to == StateRunning:
		return wire.EventResumed
	case to == StateKilled:
		return wire.EventKilled
	case to == StateFailed:
		return wire.EventFailed
	}
	return ""
}

// newEvent returns an event of type typ about sandbox sb (its record as
// it is after the change), with data.
func newEvent(sb *store.Sandbox, typ string, data wire.SandboxEventData) *store.Event {
	b, _ := json.Marshal(data)
	return &store.Event{
		ID: uuid.NewString(), Type: typ, SandboxID: sb.ID, TeamID: sb.Team,
		Template: sb.Template, BuildID: sb.Template, ExecutionID: sb.ID,
		At: time.Now().UTC(), Data: b,
	}
}

// moveEvent is the event that moving sb (as it is after the change) from
// from reports, or nil.
func moveEvent(ctx context.Context, sb *store.Sandbox, from State) *store.Event {
	typ := eventOfMove(from, sb.State)
	if typ == "" {
		return nil
	}
	data := wire.SandboxEventData{Reason: reasonOf(ctx), State: string(sb.State), PreviousState: string(from)}
	switch sb.State {
	case StateFailed:
		data.Reason = sb.Error
	case StatePaused:
		data.PauseKind = sb.Life.PauseKind
	}
	return newEvent(sb, typ, data)
}

// updatedEvent reports sb's new end of life.
func updatedEvent(ctx context.Context, sb *store.Sandbox) *store.Event {
	data := wire.SandboxEventData{Reason: reasonOf(ctx)}
	if sb.EndAt.IsZero() {
		data.NoTimeout = true
	} else {
		end := sb.EndAt
		data.EndAt = &end
	}
	return newEvent(sb, wire.EventUpdated, data)
}

// stored tells the event sink of ev, stored.
func (m *Manager) stored(ev *store.Event) {
	if ev != nil && m.cfg.Events != nil {
		m.cfg.Events.Stored(ev)
	}
}

// putEvent stores ev, an event not tied to a state change (a snapshot),
// and tells the sink. An event that cannot be stored is logged: what it
// reports has happened already.
func (m *Manager) putEvent(ctx context.Context, ev *store.Event) {
	if err := m.db.PutEvent(ctx, ev); err != nil {
		m.log.Error("store lifecycle event", "sandbox_id", ev.SandboxID, "type", ev.Type, "err", err)
		return
	}
	m.stored(ev)
}
