package sandbox

import (
	"context"
	"errors"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// TestCheckCapacity: what holds a box counts (creating, running, frozen,
// pausing, resuming); paused to disk, failed and the sandbox itself do
// not; past either bound is unavailable (503).
func TestCheckCapacity(t *testing.T) {
	rec := func(id string, st State, kind string, cpus float64, mem int64) *store.Sandbox {
		sb := &store.Sandbox{ID: id, Template: "base", State: st, Runtime: "runc", CPUs: cpus, MemoryMB: mem}
		sb.Life.PauseKind = kind
		return sb
	}
	m := newTestManager(t, Config{CapacityCPUs: 4, CapacityMemoryMB: 2048},
		rec("running", StateRunning, "", 1, 512),
		rec("pooled", StateCreating, "", 1, 512),
		rec("frozen", StatePaused, PauseFrozen, 1, 512),
		rec("ondisk", StatePaused, PauseMemory, 8, 8192),
		rec("files", StatePaused, PauseFilesystem, 8, 8192),
		rec("failed", StateFailed, "", 8, 8192),
	)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		sb   *store.Sandbox
		ok   bool
	}{
		{"fits exactly", rec("new", StateCreating, "", 1, 512), true},
		{"memory past it", rec("new", StateCreating, "", 1, 513), false},
		{"CPUs past it", rec("new", StateCreating, "", 1.5, 256), false},
		{"a paused one resuming is not counted twice", rec("ondisk", StatePaused, PauseMemory, 1, 512), true},
	} {
		err := m.checkCapacity(ctx, tc.sb)
		if tc.ok && err != nil {
			t.Errorf("%s: %v, want room", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("%s: %v, want unavailable", tc.name, err)
		}
	}
	if err := newTestManager(t, Config{}, rec("big", StateRunning, "", 64, 1<<20)).checkCapacity(ctx, rec("new", StateCreating, "", 64, 1<<20)); err != nil {
		t.Errorf("no capacity set: %v, want no bound", err)
	}
}
