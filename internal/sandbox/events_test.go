package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// TestEventOfMove lists the event every allowed move reports.
func TestEventOfMove(t *testing.T) {
	want := map[[2]State]string{
		{StateCreating, StateRunning}: wire.EventCreated,
		{StateCreating, StateKilled}:  wire.EventKilled,
		{StateRunning, StatePaused}:   wire.EventPaused,
		{StateRunning, StateKilled}:   wire.EventKilled,
		{StateRunning, StateFailed}:   wire.EventFailed,
		{StatePausing, StatePaused}:   wire.EventPaused,
		{StatePausing, StateKilled}:   wire.EventKilled,
		{StatePaused, StateKilled}:    wire.EventKilled,
		{StateResuming, StateRunning}: wire.EventResumed,
		{StateResuming, StateKilled}:  wire.EventKilled,
	}
	for from, tos := range moves {
		for _, to := range tos {
			if got := eventOfMove(from, to); got != want[[2]State{from, to}] {
				t.Errorf("%s to %s: event %q, want %q", from, to, got, want[[2]State{from, to}])
			}
		}
	}
}

type sinkRecorder struct {
	mu  sync.Mutex
	evs []*store.Event
}

func (s *sinkRecorder) Stored(ev *store.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ev)
}

// TestTransitionStoresEvent checks that a move is stored with its event
// and its outbox rows, that the sink hears of it, and that a refused
// (stale) move stores no event.
func TestTransitionStoresEvent(t *testing.T) {
	sink := &sinkRecorder{}
	m := newTestManager(t, Config{Runtimes: map[string]Runtime{"runc": boxlessRuntime{noRuntime{t}}}, Events: sink},
		&store.Sandbox{ID: "cevent00000000000001", Template: "base", State: StateRunning, Runtime: "runc"})
	ctx := context.Background()
	hook := &store.Webhook{ID: "wh1", TeamID: store.DefaultTeamID, Name: "a", URL: "http://x", Events: []string{wire.EventPaused}, Enabled: true, Secret: "s"}
	if err := m.db.PutWebhook(ctx, hook); err != nil {
		t.Fatal(err)
	}
	sb, err := m.db.GetSandbox(ctx, "cevent00000000000001")
	if err != nil {
		t.Fatal(err)
	}
	stale := *sb
	for _, to := range []State{StatePausing, StatePaused} {
		if err := m.transition(withReason(ctx, reasonIdle), sb, to, func(sb *store.Sandbox) { sb.Life.PauseKind = PauseFrozen }); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := m.db.ListEvents(ctx, store.EventFilter{SandboxID: sb.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Type != wire.EventPaused {
		t.Fatalf("events after a pause: %+v, want one paused", evs)
	}
	var data wire.SandboxEventData
	if err := json.Unmarshal(evs[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.Reason != reasonIdle || data.State != "paused" || data.PreviousState != "pausing" || data.PauseKind != PauseFrozen {
		t.Errorf("event data %+v", data)
	}
	if len(sink.evs) != 1 || sink.evs[0].ID != evs[0].ID {
		t.Errorf("sink heard %v, want the paused event", sink.evs)
	}
	due, err := m.db.WebhookDeliveries(ctx, "wh1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0].Event.ID != evs[0].ID {
		t.Fatalf("outbox %+v, want the paused event queued", due)
	}
	// A move from the stale copy is refused and stores nothing.
	if err := m.transition(ctx, &stale, StateKilled, nil); !errors.Is(err, store.ErrStale) {
		t.Fatalf("stale move: %v", err)
	}
	evs, _ = m.db.ListEvents(ctx, store.EventFilter{})
	if len(evs) != 1 || slices.ContainsFunc(evs, func(e *store.Event) bool { return e.Type == wire.EventKilled }) {
		t.Fatalf("events after a refused move: %d", len(evs))
	}
}
