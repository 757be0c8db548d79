// Package usage samples what each running sandbox uses (CPU, memory, disk)
// every few seconds and keeps the samples in the store, where the metrics
// routes of the API read them: they outlive a restart of sbx serve and stay
// for paused and failed sandboxes while their record exists, and go with it.
//
// # Overview
//
// A [Sampler] reads, for each sandbox stored as running, its box's cgroup
// through its runtime (a [Meter]: the runc and runsc drivers are) and the
// filesystem of its disk, and stores one [store.SandboxMetric]; it also
// stores one [store.TeamMetric] per round (sandboxes running, sandboxes
// started since the round before). CPU use is the CPU time the box used
// between two samples over the wall time between them and the sandbox's
// cores, so the first sample of a box counts from its start.
//
// Every sample is kept for [KeepAll]; older ones are thinned to the first
// of each [ThinBucket], and samples of deleted sandboxes are deleted.
//
// # Metering
//
// Each round also meters the sandboxes (meter.go): it adds to each
// running sandbox's stored usage (store.AddUsage: vCPU-seconds reserved,
// CPU time used, memory and disk reserved, memory used) what it used since
// its last metered sample, whose time and cgroup CPU counter are stored
// with the totals, so that a restarted server goes on from them without
// counting anything twice. Usage stays when a sandbox's record goes.
package usage

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
)

const (
	// KeepAll is how long every sample is kept.
	KeepAll = 24 * time.Hour
	// ThinBucket is the span of which one sample is kept past KeepAll.
	ThinBucket = 10 * time.Minute
	// pruneEvery is how often old samples are thinned.
	pruneEvery = 10 * time.Minute
	// DefaultInterval is the time between samples when none is set.
	DefaultInterval = 5 * time.Second
)

// Meter is what the Sampler needs of a runtime: what box id's cgroup has
// used. It is called from one goroutine, for one box at a time.
type Meter interface {
	Usage(ctx context.Context, id string) (sandbox.BoxUsage, error)
}

// Store is what the Sampler needs of the database.
type Store interface {
	ListSandboxes(ctx context.Context, states ...store.State) ([]*store.Sandbox, error)
	PutSandboxMetrics(ctx context.Context, ms []store.SandboxMetric) error
	LastSandboxMetric(ctx context.Context, id string) (store.SandboxMetric, bool, error)
	PutTeamMetric(ctx context.Context, m store.TeamMetric) error
	PruneMetrics(ctx context.Context, before time.Time, bucket time.Duration) error
	AddUsage(ctx context.Context, ds []store.UsageDelta) error
	LastUsageMark(ctx context.Context, id string) (store.UsageMark, bool, error)
}

// Config configures a Sampler.
type Config struct {
	// Interval is the time between samples (default DefaultInterval).
	Interval time.Duration
	// Meters are the runtimes that can report a box's use, by name; the
	// sandboxes of other runtimes get disk figures only.
	Meters map[string]Meter
	// DiskDir returns the directory sandbox id's disk is mounted on
	// ("" when it has none).
	DiskDir func(id string) string
	// SentBytes returns the bytes sandbox id has sent through its
	// network link so far (false: it has none); nil meters no egress.
	SentBytes func(id string) (int64, bool)
	// PausedBytes returns the size of what paused sandbox id keeps on
	// this node (its files, its memory image); nil meters none. It is
	// asked once per pause and server.
	PausedBytes func(id string) int64
	// Team is the id under which team samples are stored.
	Team string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Sampler takes the samples. Create it with New; Run takes them until its
// context ends.
type Sampler struct {
	cfg Config
	db  Store
	log *slog.Logger

	mu sync.Mutex
	// last is each box's CPU time at its last sample.
	last map[string]cpuMark
	// lastRound is when the round before ran.
	lastRound time.Time
	lastPrune time.Time
	// marks are the sandboxes' last metered samples (meter.go).
	marks map[string]store.UsageMark
	// kept are the paused sandboxes' PausedBytes.
	kept map[string]int64
}

type cpuMark struct {
	at    time.Time
	nanos int64
}

// New returns a Sampler.
func New(cfg Config, db Store, log *slog.Logger) *Sampler {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sampler{cfg: cfg, db: db, log: log, last: map[string]cpuMark{}, marks: map[string]store.UsageMark{}, kept: map[string]int64{}}
}

// Run samples every Interval until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Sample(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("metrics: sample", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample takes one round of samples now: one for each running sandbox and
// one for the team.
func (s *Sampler) Sample(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sbs, err := s.db.ListSandboxes(ctx, "running")
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	t0 := time.Now()
	defer func() { s.log.Debug("metrics sampled", "sandboxes", len(sbs), "sample_time", time.Since(t0)) }()
	ms := make([]store.SandboxMetric, 0, len(sbs))
	seen := make(map[string]bool, len(sbs))
	var started int64
	cpuRead := make([]bool, len(sbs))
	for i, sb := range sbs {
		seen[sb.ID] = true
		if !s.lastRound.IsZero() && sb.StartedAt.After(s.lastRound) {
			started++
		}
		var m store.SandboxMetric
		m, cpuRead[i] = s.sample(ctx, sb, now)
		ms = append(ms, m)
	}
	if s.lastRound.IsZero() {
		// The first round after a start: the sandboxes started within
		// one interval count, as they would have in the round before.
		for _, sb := range sbs {
			if sb.StartedAt.After(now.Add(-s.cfg.Interval)) {
				started++
			}
		}
	}
	for id := range s.last {
		if !seen[id] {
			delete(s.last, id)
		}
	}
	s.lastRound = now
	if err := s.db.PutSandboxMetrics(ctx, ms); err != nil {
		return err
	}
	if err := s.meter(ctx, sbs, ms, cpuRead, now); err != nil {
		return err
	}
	if err := s.db.PutTeamMetric(ctx, store.TeamMetric{TeamID: s.cfg.Team, Time: now,
		Concurrent: int64(len(sbs)), Started: started, Interval: s.cfg.Interval}); err != nil {
		return err
	}
	if now.Sub(s.lastPrune) >= pruneEvery {
		s.lastPrune = now
		return s.db.PruneMetrics(ctx, now.Add(-KeepAll), ThinBucket)
	}
	return nil
}

// sample reads one sandbox, and reports whether its box's CPU counter was
// read. What cannot be read is left zero rather than losing the rest of
// the sample.
func (s *Sampler) sample(ctx context.Context, sb *store.Sandbox, now time.Time) (store.SandboxMetric, bool) {
	var cpuRead bool
	m := store.SandboxMetric{
		SandboxID: sb.ID, Time: now,
		CPUCount:  int64(math.Ceil(sb.CPUs)),
		MemTotal:  sb.MemoryMB << 20,
		DiskTotal: sb.DiskMB << 20,
	}
	if mt, ok := s.cfg.Meters[sb.Runtime]; ok {
		u, err := mt.Usage(ctx, sb.ID)
		if err != nil {
			s.log.Debug("metrics: box usage", "sandbox_id", sb.ID, "err", err)
		} else {
			m.CPUNanos = int64(u.CPUNanos)
			// Used memory leaves out the page cache the kernel would drop
			// first, as `free` and container tools count it.
			m.MemUsed = max(0, u.MemoryBytes-u.InactiveFileBytes)
			m.MemCache = u.CacheBytes
			m.CPUUsedPct = s.cpuPct(ctx, sb, m)
			cpuRead = true
		}
	}
	if s.cfg.DiskDir != nil {
		if dir := s.cfg.DiskDir(sb.ID); dir != "" {
			var st unix.Statfs_t
			if err := unix.Statfs(dir, &st); err == nil {
				m.DiskUsed = int64(st.Blocks-st.Bfree) * st.Bsize
				if m.DiskTotal == 0 {
					m.DiskTotal = int64(st.Blocks) * st.Bsize
				}
			}
		}
	}
	return m, cpuRead
}

// cpuPct works out the share of the sandbox's cores it used since its
// last sample (kept in memory, or stored by an earlier server), or since
// it started.
func (s *Sampler) cpuPct(ctx context.Context, sb *store.Sandbox, m store.SandboxMetric) float64 {
	prev, ok := s.last[sb.ID]
	if !ok {
		if last, found, err := s.db.LastSandboxMetric(ctx, sb.ID); err == nil && found && !last.Time.Before(sb.StartedAt) {
			prev, ok = cpuMark{at: last.Time, nanos: last.CPUNanos}, true
		}
	}
	if !ok || prev.nanos > m.CPUNanos {
		// No sample since the box (re)started: its cgroup counts from
		// then.
		prev = cpuMark{at: sb.StartedAt}
	}
	s.last[sb.ID] = cpuMark{at: m.Time, nanos: m.CPUNanos}
	wall := m.Time.Sub(prev.at)
	if wall <= 0 || m.CPUCount <= 0 {
		return 0
	}
	pct := float64(m.CPUNanos-prev.nanos) / float64(wall) / float64(m.CPUCount) * 100
	return math.Round(min(100, max(0, pct))*100) / 100
}
