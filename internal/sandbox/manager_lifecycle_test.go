package sandbox

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// checkpointRuntime is a runtime that claims to checkpoint; only its type
// matters here.
type checkpointRuntime struct{ noRuntime }

func (checkpointRuntime) Checkpoint(context.Context, string, string, bool) error {
	return errors.New("not in tests")
}
func (checkpointRuntime) Restore(context.Context, BoxSpec, string) error {
	return errors.New("not in tests")
}

func TestCheckLifecycle(t *testing.T) {
	m := newTestManager(t, Config{Runtimes: map[string]Runtime{"runc": noRuntime{t}, "runsc": checkpointRuntime{noRuntime{t}}}, RuntimeName: "runc"})
	for _, tc := range []struct {
		name string
		rt   string
		in   Lifecycle
		want Lifecycle
		msg  string
	}{
		{"default", "runc", Lifecycle{}, Lifecycle{OnTimeout: "kill"}, ""},
		{"pause kind and time are not the caller's", "runc", Lifecycle{PauseKind: "memory", PausedAt: time.Now()}, Lifecycle{OnTimeout: "kill"}, ""},
		{"auto pause", "runc", Lifecycle{OnTimeout: "pause"}, Lifecycle{OnTimeout: "pause"}, ""},
		{"persistent on runc keeps files on timeout", "runc", Lifecycle{Persistent: true}, Lifecycle{Persistent: true, OnTimeout: "pause", TimeoutFilesOnly: true}, ""},
		{"persistent on runsc keeps memory", "runsc", Lifecycle{Persistent: true}, Lifecycle{Persistent: true, OnTimeout: "pause"}, ""},
		{"persistent killed on timeout", "runc", Lifecycle{Persistent: true, OnTimeout: "kill"}, Lifecycle{Persistent: true, OnTimeout: "kill"}, ""},
		{"idle implies auto-resume", "runc", Lifecycle{IdlePause: time.Minute}, Lifecycle{OnTimeout: "kill", IdlePause: time.Minute, AutoResume: true}, ""},
		{"auto-resume", "runc", Lifecycle{OnTimeout: "pause", AutoResume: true}, Lifecycle{OnTimeout: "pause", AutoResume: true}, ""},
		{"bad on-timeout", "runc", Lifecycle{OnTimeout: "explode"}, Lifecycle{}, "onTimeout"},
		{"negative idle", "runc", Lifecycle{IdlePause: -time.Second}, Lifecycle{}, "negative"},
		{"idle under a second", "runc", Lifecycle{IdlePause: time.Millisecond}, Lifecycle{}, "at least 1 second"},
		{"auto-resume without pause", "runc", Lifecycle{AutoResume: true}, Lifecycle{}, "autoResume needs"},
		{"auto-resume with files-only", "runc", Lifecycle{OnTimeout: "pause", TimeoutFilesOnly: true, AutoResume: true}, Lifecycle{}, "files-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.checkLifecycle(tc.rt, tc.in)
			if tc.msg != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(errdefs.Message(err), tc.msg) {
					t.Fatalf("checkLifecycle = %v, want invalid argument %q", err, tc.msg)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("checkLifecycle = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestPauseKind(t *testing.T) {
	no, yes := false, true
	for _, tc := range []struct {
		rt     Runtime
		memory *bool
		want   string
	}{
		{noRuntime{t}, nil, PauseFrozen},
		{noRuntime{t}, &yes, PauseFrozen},
		{noRuntime{t}, &no, PauseFilesystem},
		{checkpointRuntime{noRuntime{t}}, nil, PauseMemory},
		{checkpointRuntime{noRuntime{t}}, &no, PauseFilesystem},
	} {
		if got := pauseKind(tc.rt, tc.memory); got != tc.want {
			t.Errorf("pauseKind(%T, %v) = %s, want %s", tc.rt, tc.memory, got, tc.want)
		}
	}
}

func TestWithTransitions(t *testing.T) {
	got := withTransitions([]State{StateRunning, StatePaused, StateFailed})
	want := []State{StateRunning, StatePaused, StateFailed, StateResuming, StatePausing}
	if !slices.Equal(got, want) {
		t.Fatalf("withTransitions = %q, want %q", got, want)
	}
}

func TestRemoveTemplateUsedBySnapshot(t *testing.T) {
	m := newTestManager(t, Config{})
	ctx := context.Background()
	if err := m.db.PutSnapshot(ctx, &Snapshot{ID: "snap-x", Template: "base", Kind: SnapshotFiles, State: "ready", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	removed := false
	err := m.Templates().Remove(ctx, "base", func(context.Context, string) error { removed = true; return nil })
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(errdefs.Message(err), "snapshot") || removed {
		t.Fatalf("RemoveTemplate of a template under a snapshot = %v (removed %v), want a conflict", err, removed)
	}
	// The snapshot itself goes (nothing stands on it), then the template.
	if err := m.Snapshots().Delete(ctx, "snap-x"); err != nil {
		t.Fatal(err)
	}
	if err := m.Templates().Remove(ctx, "base", func(context.Context, string) error { removed = true; return nil }); err != nil || !removed {
		t.Fatalf("RemoveTemplate after the snapshot went = %v (removed %v)", err, removed)
	}
}
