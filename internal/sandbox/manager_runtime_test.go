package sandbox

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// recordingRuntime records Destroy and State calls and reports every box as
// running; Start is never expected here (no templates in these tests).
type recordingRuntime struct {
	noRuntime
	mu    sync.Mutex
	calls []string
}

func (r *recordingRuntime) record(op, id string) {
	r.mu.Lock()
	r.calls = append(r.calls, op+" "+id)
	r.mu.Unlock()
}

func (r *recordingRuntime) Destroy(_ context.Context, id string) error {
	r.record("destroy", id)
	return nil
}

func (r *recordingRuntime) State(_ context.Context, id string) (BoxState, error) {
	r.record("state", id)
	return BoxState{Exists: true, Running: true, Pid: 1}, nil
}

func (r *recordingRuntime) got() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, ", ")
}

func TestRuntimeSelection(t *testing.T) {
	runc, runsc := &recordingRuntime{noRuntime: noRuntime{t}}, &recordingRuntime{noRuntime: noRuntime{t}}
	now := time.Now().UTC()
	rec := func(id, rt string) *store.Sandbox {
		return &store.Sandbox{ID: id, Template: "base", State: StateRunning, Runtime: rt, CreatedAt: now, StartedAt: now}
	}
	m := newTestManager(t, Config{
		Runtimes:            map[string]Runtime{"runc": runc, "runsc": runsc},
		RuntimeName:         "runsc",
		UnavailableRuntimes: map[string]string{"vm": "no KVM"},
	}, rec("onrunc", "runc"), rec("onrunsc", "runsc"), rec("onvm", "vm"))
	ctx := context.Background()

	if got := strings.Join(m.runtimeNames(), " "); got != "runc runsc" {
		t.Errorf("RuntimeNames = %q", got)
	}
	if m.defaultRuntime() != "runsc" {
		t.Errorf("DefaultRuntime = %q", m.defaultRuntime())
	}
	for _, tc := range []struct {
		ask, want, errContains string
	}{
		{"", "runsc", ""},
		{"runc", "runc", ""},
		{"runsc", "runsc", ""},
		{"vm", "", `runtime "vm" is not available on this server (no KVM); available: runc, runsc`},
		{"kata", "", `unknown runtime "kata"; available: runc, runsc`},
		{"RUNC", "", `unknown runtime "RUNC"`},
	} {
		got, err := m.pickRuntime(tc.ask)
		if tc.errContains != "" {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(errdefs.Message(err), tc.errContains) {
				t.Errorf("pickRuntime(%q) = %q, %v; want invalid argument %q", tc.ask, got, err, tc.errContains)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("pickRuntime(%q) = %q, %v; want %q", tc.ask, got, err, tc.want)
		}
	}
	// Create refuses an unknown runtime before anything else happens.
	if _, err := m.Create(ctx, CreateParams{Template: "base", Runtime: "kata"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Create(runtime kata) = %v, want invalid argument", err)
	}

	// Reconcile asks each sandbox's own runtime, and leaves alone the one
	// whose runtime is not available.
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if runc.got() != "state onrunc" || runsc.got() != "state onrunsc" {
		t.Errorf("Reconcile: runc saw %q, runsc saw %q", runc.got(), runsc.got())
	}
	if sb, err := m.Get(ctx, "onvm"); err != nil || sb.State != StateRunning {
		t.Errorf("after Reconcile, the sandbox on an unavailable runtime is %v, %v; want kept running", sb, err)
	}

	// Kill destroys through the sandbox's own runtime.
	if err := m.Kill(ctx, "onrunsc"); err != nil {
		t.Fatal(err)
	}
	if runc.got() != "state onrunc" || runsc.got() != "state onrunsc, destroy onrunsc" {
		t.Errorf("Kill(onrunsc): runc saw %q, runsc saw %q", runc.got(), runsc.got())
	}
	// A box on a runtime this server cannot drive is not written off.
	if err := m.Kill(ctx, "onvm"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Kill(onvm) = %v, want failed precondition", err)
	}
	if sb, err := m.Get(ctx, "onvm"); err != nil || sb.State != StateRunning {
		t.Errorf("after a refused Kill: %v, %v; want kept running", sb, err)
	}
}

func TestNewChecksRuntimes(t *testing.T) {
	r := noRuntime{t}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" means New succeeds
	}{
		{"one runtime, no default", Config{Runtimes: map[string]Runtime{"runc": r}}, ""},
		{"default present", Config{Runtimes: map[string]Runtime{"runc": r, "runsc": r}, RuntimeName: "runc"}, ""},
		{"no runtimes", Config{}, "no runtimes"},
		{"several, no default", Config{Runtimes: map[string]Runtime{"runc": r, "runsc": r}}, "no default"},
		{"default unknown", Config{Runtimes: map[string]Runtime{"runc": r}, RuntimeName: "kata"}, `default runtime "kata" is not one of the runtimes (runc)`},
		{"default unavailable", Config{Runtimes: map[string]Runtime{"runc": r}, RuntimeName: "runsc", UnavailableRuntimes: map[string]string{"runsc": "not installed"}}, `default runtime "runsc" is not available: not installed`},
	} {
		cfg := tc.cfg
		err := checkRuntimes(&cfg)
		if tc.want == "" {
			if err != nil || cfg.RuntimeName == "" {
				t.Errorf("%s: checkRuntimes = %v, default %q", tc.name, err, cfg.RuntimeName)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: checkRuntimes = %v, want %q", tc.name, err, tc.want)
		}
	}
}
