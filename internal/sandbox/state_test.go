package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// boxlessRuntime is a runtime with no boxes: the box watch a move to
// running starts asks for its box's state and is told there is none to
// read, and leaves it at that.
type boxlessRuntime struct{ noRuntime }

func (boxlessRuntime) State(context.Context, string) (BoxState, error) {
	return BoxState{}, errors.New("no boxes in this test")
}

// TestTransitionTable moves a stored sandbox along every pair of states:
// each move the table allows is stored, with the change that goes with it
// and the version advanced; each other move is refused as a failed
// precondition naming both states, and the record is left as it was.
func TestTransitionTable(t *testing.T) {
	allowed := map[[2]State]bool{
		{StateCreating, StateRunning}: true,
		{StateCreating, StateKilled}:  true,
		{StateRunning, StatePausing}:  true,
		{StateRunning, StatePaused}:   true,
		{StateRunning, StateKilled}:   true,
		{StateRunning, StateFailed}:   true,
		{StatePausing, StatePaused}:   true,
		{StatePausing, StateRunning}:  true,
		{StatePausing, StateKilled}:   true,
		{StatePaused, StateResuming}:  true,
		{StatePaused, StateKilled}:    true,
		{StateResuming, StateRunning}: true,
		{StateResuming, StatePaused}:  true,
		{StateResuming, StateKilled}:  true,
	}
	var mu sync.Mutex
	pausing := map[string]int{}
	m := newTestManager(t, Config{
		Runtimes: map[string]Runtime{"runc": boxlessRuntime{noRuntime{t}}},
		Hooks: Hooks{Pausing: func(id string) {
			mu.Lock()
			defer mu.Unlock()
			pausing[id]++
		}},
	})
	ctx := context.Background()
	n := 0
	for _, from := range states {
		for _, to := range states {
			t.Run(fmt.Sprintf("%s_to_%s", from, to), func(t *testing.T) {
				n++
				id := fmt.Sprintf("cmove%015d", n)
				if err := m.db.PutSandbox(ctx, &store.Sandbox{ID: id, Template: "base", State: from, Runtime: "runc", Version: 7}); err != nil {
					t.Fatal(err)
				}
				sb, err := m.db.GetSandbox(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				err = m.transition(ctx, sb, to, func(sb *store.Sandbox) { sb.Error = "moved" })
				got, gerr := m.db.GetSandbox(ctx, id)
				if gerr != nil {
					t.Fatal(gerr)
				}
				m.timers.stop(id)
				if allowed[[2]State{from, to}] {
					if err != nil {
						t.Fatalf("allowed move refused: %v", err)
					}
					if got.State != to || got.Error != "moved" || got.Version != 8 {
						t.Fatalf("stored after the move: state %s, error %q, version %d; want %s, \"moved\", 8", got.State, got.Error, got.Version, to)
					}
					if sb.State != to || sb.Version != 8 {
						t.Fatalf("caller's record after the move: state %s, version %d", sb.State, sb.Version)
					}
					mu.Lock()
					told := pausing[id]
					mu.Unlock()
					if want := map[bool]int{true: 1}[to == StatePausing]; told != want {
						t.Errorf("pausing hook called %d times, want %d", told, want)
					}
					return
				}
				if !errors.Is(err, errdefs.ErrFailedPrecondition) {
					t.Fatalf("refused move: %v, want a failed precondition", err)
				}
				if msg := errdefs.Message(err); !strings.Contains(msg, fmt.Sprintf("cannot go from %s to %s", from, to)) {
					t.Errorf("refusal says %q; want it to name both states", msg)
				}
				if got.State != from || got.Error != "" || got.Version != 7 {
					t.Fatalf("stored after a refused move: state %s, error %q, version %d", got.State, got.Error, got.Version)
				}
				if sb.State != from || sb.Version != 7 {
					t.Fatalf("caller's record after a refused move: state %s, version %d", sb.State, sb.Version)
				}
			})
		}
	}
}

// TestTransitionStale checks the compare-and-set: a move made from a
// record another writer has moved since it was read (here round to the
// same state again) is refused as a conflict and stores nothing.
func TestTransitionStale(t *testing.T) {
	m := newTestManager(t, Config{Runtimes: map[string]Runtime{"runc": boxlessRuntime{noRuntime{t}}}},
		&store.Sandbox{ID: "cstale00000000000001", Template: "base", State: StateRunning, Runtime: "runc"})
	ctx := context.Background()
	stale, err := m.db.GetSandbox(ctx, "cstale00000000000001")
	if err != nil {
		t.Fatal(err)
	}
	// Another writer pauses and resumes it.
	other, err := m.db.GetSandbox(ctx, "cstale00000000000001")
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []State{StatePausing, StatePaused, StateResuming, StateRunning} {
		if err := m.transition(ctx, other, to, nil); err != nil {
			t.Fatalf("other writer's move to %s: %v", to, err)
		}
	}
	m.timers.stop(other.ID)
	err = m.transition(ctx, stale, StateFailed, func(sb *store.Sandbox) { sb.Error = "stale" })
	if !errors.Is(err, errdefs.ErrConflict) || !errors.Is(err, store.ErrStale) {
		t.Fatalf("move from a stale record: %v, want a conflict (store.ErrStale)", err)
	}
	if stale.State != StateRunning || stale.Error != "" {
		t.Errorf("the refused move changed the caller's record: %s %q", stale.State, stale.Error)
	}
	got, err := m.db.GetSandbox(ctx, other.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateRunning || got.Error != "" || got.Version != other.Version {
		t.Fatalf("stored after the stale move: %s %q version %d; want running, no error, version %d", got.State, got.Error, got.Version, other.Version)
	}
	// A field update from the stale record is refused the same way.
	stale.EndAt = time.Now().Add(time.Hour)
	if err := m.update(ctx, stale, nil); !errors.Is(err, store.ErrStale) {
		t.Fatalf("update from a stale record: %v, want store.ErrStale", err)
	}
}
