package sandbox

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

func TestCheckTeam(t *testing.T) {
	team := func(l store.TeamLimits) *store.Team { return &store.Team{ID: "q", Name: "q", Limits: l} }
	sb := &store.Sandbox{ID: "new", CPUs: 2, MemoryMB: 1024, DiskMB: 4096}
	held := store.TeamUsage{Active: 2, CPUs: 4, MemoryMB: 2048, DiskMB: 8192, Paused: 1}
	for _, tc := range []struct {
		name   string
		limits store.TeamLimits
		op     quotaOp
		want   string // the limit named in the refusal; "" for none
	}{
		{"no limits", store.TeamLimits{}, quotaStart, ""},
		{"sandboxes fit", store.TeamLimits{MaxSandboxes: 3}, quotaStart, ""},
		{"sandboxes", store.TeamLimits{MaxSandboxes: 2}, quotaStart, "(max-sandboxes)"},
		{"sandboxes on resume", store.TeamLimits{MaxSandboxes: 2}, quotaResume, "(max-sandboxes)"},
		{"cpus fit", store.TeamLimits{MaxCPUs: 6}, quotaStart, ""},
		{"cpus", store.TeamLimits{MaxCPUs: 5.5}, quotaStart, "(max-cpus)"},
		{"memory fit", store.TeamLimits{MaxMemoryMB: 3072}, quotaResume, ""},
		{"memory", store.TeamLimits{MaxMemoryMB: 3071}, quotaResume, "(max-memory-mb)"},
		{"disk fits", store.TeamLimits{MaxDiskMB: 12288}, quotaStart, ""},
		{"disk", store.TeamLimits{MaxDiskMB: 12287}, quotaStart, "(max-disk-mb)"},
		// A resumed sandbox's disk is held already.
		{"disk on resume", store.TeamLimits{MaxDiskMB: 8192}, quotaResume, ""},
		{"paused fit", store.TeamLimits{MaxPaused: 2}, quotaPause, ""},
		{"paused", store.TeamLimits{MaxPaused: 1}, quotaPause, "(max-paused)"},
		// A pause frees what a start would take.
		{"pause under full limits", store.TeamLimits{MaxSandboxes: 1, MaxCPUs: 1, MaxMemoryMB: 1, MaxDiskMB: 1}, quotaPause, ""},
		{"start ignores paused", store.TeamLimits{MaxPaused: 1}, quotaStart, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkTeam(team(tc.limits), held, sb, tc.op)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("checkTeam = %v; want it to pass", err)
			case tc.want != "" && (!errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(errdefs.Message(err), tc.want)):
				t.Errorf("checkTeam = %v; want resource exhausted naming %s", err, tc.want)
			}
		})
	}
}

// TestTeamQuotasBeforeRuntime: a team's longest timeout refuses creates,
// timeouts and resumes past it with 400, and its paused and concurrent
// limits refuse a pause and a resume with 429, all before the runtime is
// asked anything (noRuntime fails the test if it is).
func TestTeamQuotasBeforeRuntime(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	run := &store.Sandbox{ID: "run", Template: "base", State: StateRunning, Runtime: "runc", CreatedAt: now, StartedAt: now, Team: "q", CPUs: 1, MemoryMB: 512}
	paused := &store.Sandbox{ID: "paused", Template: "base", State: StatePaused, Runtime: "runc", CreatedAt: now, StartedAt: now, Team: "q", CPUs: 1, MemoryMB: 512,
		Life: store.SandboxLife{PauseKind: PauseFilesystem}}
	m := newTestManager(t, Config{DefaultTimeout: 5 * time.Minute}, run, paused)
	if err := m.db.CreateTeam(ctx, &store.Team{ID: "q", Name: "q", CreatedAt: now,
		Limits: store.TeamLimits{MaxTimeoutSec: 60, MaxPaused: 1, MaxSandboxes: 1}}); err != nil {
		t.Fatal(err)
	}
	long, short := 2*time.Minute, 30*time.Second
	wantErr := func(what string, err error, class error, msg string) {
		t.Helper()
		if !errors.Is(err, class) || !strings.Contains(errdefs.Message(err), msg) {
			t.Errorf("%s = %v; want %v naming %s", what, err, class, msg)
		}
	}
	_, err := m.Create(ctx, CreateParams{Template: "base", Team: "q", Timeout: &long})
	wantErr("Create past max-timeout", err, errdefs.ErrInvalidArgument, "(max-timeout)")
	wantErr("SetTimeout past max-timeout", m.SetTimeout(ctx, run.ID, long), errdefs.ErrInvalidArgument, "(max-timeout)")
	wantErr("SetTimeout 0 (no limit) under max-timeout", m.SetTimeout(ctx, run.ID, 0), errdefs.ErrInvalidArgument, "(max-timeout)")
	_, err = m.Extend(ctx, run.ID, &long)
	wantErr("Extend past max-timeout", err, errdefs.ErrInvalidArgument, "(max-timeout)")
	_, _, err = m.Resume(ctx, paused.ID, ResumeOptions{Timeout: &long})
	wantErr("Resume past max-timeout", err, errdefs.ErrInvalidArgument, "(max-timeout)")

	if err := m.SetTimeout(ctx, run.ID, short); err != nil {
		t.Errorf("SetTimeout within max-timeout: %v", err)
	}
	// The server's default (5 min) is cut to the team's limit.
	sb, err := m.Extend(ctx, run.ID, nil)
	if err != nil {
		t.Fatalf("Extend with the default: %v", err)
	}
	if left := time.Until(sb.EndAt); left > time.Minute || left < 50*time.Second {
		t.Errorf("Extend with the server's default left %s to live; want the team's 1m", left)
	}

	_, err = m.Pause(ctx, run.ID, nil)
	wantErr("Pause past max-paused", err, errdefs.ErrResourceExhausted, "(max-paused)")
	_, _, err = m.Resume(ctx, paused.ID, ResumeOptions{Timeout: &short})
	wantErr("Resume past max-sandboxes", err, errdefs.ErrResourceExhausted, "(max-sandboxes)")
	for _, want := range []*store.Sandbox{run, paused} {
		got, err := m.db.GetSandbox(ctx, want.ID)
		if err != nil || got.State != want.State {
			t.Errorf("after refusals %s is %+v, %v; want %s", want.ID, got, err, want.State)
		}
	}
}
