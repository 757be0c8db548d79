package usage

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
)

// meter reports the CPU time and memory it is set to.
type meter struct{ u sandbox.BoxUsage }

func (m *meter) Usage(context.Context, string) (sandbox.BoxUsage, error) { return m.u, nil }

// TestSampler runs rounds on a fake clock and meter over a real store:
// CPU use is the CPU time between samples over the wall time and cores,
// memory leaves out inactive file pages, totals are the limits, and the
// team sample counts sandboxes started since the round before.
func TestSampler(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Unix(1_800_000_000, 0)
	sb := &store.Sandbox{ID: "aaaaaaaaaaaaaaaaaaaa", Template: "base", State: "running", Runtime: "runc",
		CreatedAt: t0, StartedAt: t0, CPUs: 1.5, MemoryMB: 512, DiskMB: 1024}
	if err := db.CreateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Second)
	m := &meter{u: sandbox.BoxUsage{CPUNanos: uint64(time.Second), MemoryBytes: 100 << 20, CacheBytes: 30 << 20, InactiveFileBytes: 20 << 20}}
	s := New(Config{Interval: time.Second, Meters: map[string]Meter{"runc": m}, Team: "default", Now: func() time.Time { return now }},
		db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	// Three seconds later the box used three more seconds of its two
	// cores (1.5 rounded up): 50%.
	now = now.Add(3 * time.Second)
	m.u.CPUNanos += uint64(3 * time.Second)
	if err := s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	ms, err := db.SandboxMetrics(ctx, sb.ID, t0, now)
	if err != nil || len(ms) != 2 {
		t.Fatalf("%d samples, %v", len(ms), err)
	}
	// The first counts from the start: 1 s of CPU in 2 s on 2 cores.
	if ms[0].CPUUsedPct != 25 || ms[1].CPUUsedPct != 50 {
		t.Fatalf("CPU use %v then %v, want 25 then 50", ms[0].CPUUsedPct, ms[1].CPUUsedPct)
	}
	if got := ms[1]; got.CPUCount != 2 || got.MemUsed != 80<<20 || got.MemCache != 30<<20 || got.MemTotal != 512<<20 || got.DiskTotal != 1024<<20 {
		t.Fatalf("sample %+v", got)
	}
	// A new sampler (a restarted server) goes on from the stored sample.
	s2 := New(Config{Interval: time.Second, Meters: map[string]Meter{"runc": m}, Team: "default", Now: func() time.Time { return now }},
		db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now = now.Add(4 * time.Second)
	m.u.CPUNanos += uint64(2 * time.Second)
	if err := s2.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	if last, _, _ := db.LastSandboxMetric(ctx, sb.ID); last.CPUUsedPct != 25 {
		t.Fatalf("CPU use after a restart %v, want 25", last.CPUUsedPct)
	}
	tm, err := db.TeamMetrics(ctx, "default", t0, now)
	if err != nil || len(tm) != 3 || tm[0].Concurrent != 1 || tm[0].Started != 0 || tm[1].Started != 0 {
		t.Fatalf("team samples %+v, %v", tm, err)
	}
}

// hostMeter reads the files a box's Usage reads (cgroup v1), of the root
// cgroup: what one sample costs in reads, without a box.
type hostMeter struct{}

func (hostMeter) Usage(context.Context, string) (sandbox.BoxUsage, error) {
	var u sandbox.BoxUsage
	for _, p := range []string{"/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat"} {
		b, err := os.ReadFile(p)
		if err != nil {
			return u, err
		}
		u.MemoryBytes += int64(len(b))
	}
	return u, nil
}

// BenchmarkSample50 times one round over 50 running sandboxes: the store's
// list, 50 meters' cgroup reads and disk statfs, and the insert.
func BenchmarkSample50(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "sbx.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := range 50 {
		sb := &store.Sandbox{ID: fmt.Sprintf("b%019d", i), Template: "base", State: "running", Runtime: "runc",
			CreatedAt: time.Now(), StartedAt: time.Now(), CPUs: 1, MemoryMB: 512, DiskMB: 10240}
		if err := db.CreateSandbox(ctx, sb); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	s := New(Config{Meters: map[string]Meter{"runc": hostMeter{}}, DiskDir: func(string) string { return dir }, Team: "default",
		Now: func() time.Time { now = now.Add(time.Second); return now }}, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.ResetTimer()
	for range b.N {
		if err := s.Sample(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
