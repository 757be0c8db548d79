package usage

import (
	"context"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
)

// TestMeter meters a sandbox on a fake clock and meter over a real store
// through a restart (a new Sampler goes on from the stored mark, counting
// the time the server was down once), a pause (no time counted) and a
// resume into a new box (its CPU counter counted from zero).
func TestMeter(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	sb := &store.Sandbox{ID: "bbbbbbbbbbbbbbbbbbbb", Template: "base", State: "running", Runtime: "runc",
		CreatedAt: t0, StartedAt: t0, CPUs: 1.5, MemoryMB: 512, DiskMB: 2048}
	if err := db.CreateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Second)
	m := &meter{u: sandbox.BoxUsage{CPUNanos: uint64(time.Second), MemoryBytes: 256 << 20}}
	var sent int64 = 1000
	sampler := func() *Sampler {
		return New(Config{Interval: time.Second, Meters: map[string]Meter{"runc": m}, Team: "default", Now: func() time.Time { return now },
			SentBytes: func(string) (int64, bool) { return sent, true }, PausedBytes: func(string) int64 { return 2 << 30 }},
			db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	total := func() store.UsageRecord {
		t.Helper()
		rs, err := db.UsageBy(ctx, store.UsageFilter{TeamID: store.DefaultTeamID}, "")
		if err != nil || len(rs) != 1 {
			t.Fatalf("usage %+v, %v", rs, err)
		}
		return rs[0]
	}
	s := sampler()
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	// 2 s from its start, 1 s of CPU.
	if u := total(); u.Run != 2*time.Second || u.CPUUsed != time.Second || u.VCPUSeconds != 3 ||
		u.MemGiBSeconds != 1 || u.MemUsedGiBSeconds != 0.5 || math.Abs(u.DiskGiBHours-4.0/3600) > 1e-12 {
		t.Fatalf("after 2 s: %+v", u)
	}
	// A restart: the next server samples 10 s later; the box kept
	// running and counting.
	now = now.Add(10 * time.Second)
	m.u.CPUNanos += uint64(7 * time.Second)
	sent += 500
	s = sampler()
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if u := total(); u.Run != 12*time.Second || u.CPUUsed != 8*time.Second || u.VCPUSeconds != 18 || u.EgressBytes != 1500 {
		t.Fatalf("after a restart: %+v", u)
	}
	// The same sample again (a second server's round at the same
	// time) adds nothing.
	if err := sampler().Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if u := total(); u.Run != 12*time.Second {
		t.Fatalf("a second round at the same time counted again: %+v", u)
	}
	// Paused for an hour (sampled each round): nothing counted.
	sb.State, sb.Life.PauseKind = "paused", "memory"
	if err := db.UpdateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		now = now.Add(20 * time.Minute)
		if err := s.Sample(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// It kept 2 GiB for the hour since its last running sample.
	if u := total(); u.Run != 12*time.Second || u.CPUUsed != 8*time.Second || math.Abs(u.PausedGiBHours-2) > 1e-9 {
		t.Fatalf("while paused: %+v", u)
	}
	// Resumed into a new box whose counter starts again: 1 s later
	// (the resume was at the paused round) it used 0.5 s.
	sb.State, sb.Life.PauseKind = "running", ""
	if err := db.UpdateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	m.u.CPUNanos = uint64(500 * time.Millisecond)
	sent = 10 // a new link
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if u := total(); u.Run != 13*time.Second || u.CPUUsed != 8500*time.Millisecond || u.EgressBytes != 1510 || math.Abs(u.PausedGiBHours-2) > 1e-9 {
		t.Fatalf("after a resume: %+v", u)
	}
	byDay, err := db.UsageBy(ctx, store.UsageFilter{Since: t0, Until: t0.Add(time.Hour)}, "day")
	if err != nil || len(byDay) != 1 || !byDay[0].Day.Equal(store.UsageDay(t0)) || byDay[0].Run != 13*time.Second {
		t.Fatalf("by day %+v, %v", byDay, err)
	}
	bySandbox, err := db.UsageBy(ctx, store.UsageFilter{TeamID: "other"}, "sandbox")
	if err != nil || len(bySandbox) != 0 {
		t.Fatalf("another team's usage %+v, %v", bySandbox, err)
	}
}
