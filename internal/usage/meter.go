package usage

import (
	"context"
	"time"

	"github.com/sbxdev/sbx/internal/store"
)

// gib is a gibibyte, in the units the sandboxes' limits and samples use.
const gib = 1 << 30

// meter adds what each running sandbox used since its last metered
// sample to its usage (store.AddUsage), and moves the marks of paused
// sandboxes, in one statement.
//
// A sandbox's last mark is kept in memory and in the store, so a
// restarted server goes on from the mark its predecessor stored: the
// wall time and the box's cumulative cgroup CPU counter since then are
// counted once, with the time the server was down (a box keeps running
// through a restart). A sandbox with no mark counts from its start (its
// cgroup counts from then); a counter below the mark is a new box (a
// resume from a snapshot), counted from zero; so is a link's byte counter
// (SentBytes) below its mark, a new link. Paused sandboxes' marks move
// every round, so a resumed sandbox's first sample counts from at most one
// interval before its resume; what a sandbox ran between its last sample
// and its pause or kill (less than one interval) is not counted. A paused
// sandbox's kept files count from its last running sample, by their size
// when first seen paused (PausedBytes).
func (s *Sampler) meter(ctx context.Context, running []*store.Sandbox, ms []store.SandboxMetric, cpuRead []bool, now time.Time) error {
	paused, err := s.db.ListSandboxes(ctx, "paused")
	if err != nil {
		return err
	}
	ds := make([]store.UsageDelta, 0, len(running)+len(paused))
	for i, sb := range running {
		prev, ok, err := s.mark(ctx, sb.ID)
		if err != nil {
			// Counting it from its start could count twice: next
			// round.
			s.log.Warn("usage: mark", "sandbox_id", sb.ID, "err", err)
			continue
		}
		if !ok {
			prev = store.UsageMark{Time: sb.StartedAt}
		}
		if prev.Time.Before(sb.StartedAt) {
			// A pooled box handed to a create: its use is the
			// create's from then.
			prev.Time = sb.StartedAt
		}
		d := store.UsageDelta{SandboxID: sb.ID, TeamID: teamOf(sb), Time: now, CPUMark: prev.CPUMark}
		if wall := now.Sub(prev.Time); wall > 0 {
			secs := wall.Seconds()
			d.Run = wall
			d.VCPUSeconds = sb.CPUs * secs
			d.MemGiBSeconds = float64(sb.MemoryMB<<20) / gib * secs
			d.MemUsedGiBSeconds = float64(ms[i].MemUsed) / gib * secs
			d.DiskGiBHours = float64(sb.DiskMB<<20) / gib * wall.Hours()
		}
		if cpuRead[i] {
			c := ms[i].CPUNanos
			if c >= prev.CPUMark {
				d.CPUUsed = time.Duration(c - prev.CPUMark)
			} else {
				d.CPUUsed = time.Duration(c)
			}
			d.CPUMark = c
		}
		d.EgressMark = prev.EgressMark
		if s.cfg.SentBytes != nil {
			if b, ok := s.cfg.SentBytes(sb.ID); ok {
				if b >= prev.EgressMark {
					d.EgressBytes = b - prev.EgressMark
				} else {
					d.EgressBytes = b
				}
				d.EgressMark = b
			}
		}
		ds = append(ds, d)
	}
	for _, sb := range paused {
		prev, ok, err := s.mark(ctx, sb.ID)
		if err != nil || !ok {
			continue
		}
		d := store.UsageDelta{SandboxID: sb.ID, TeamID: teamOf(sb), Time: now, CPUMark: prev.CPUMark, EgressMark: prev.EgressMark}
		if s.cfg.PausedBytes != nil {
			size, ok := s.kept[sb.ID]
			if !ok {
				size = s.cfg.PausedBytes(sb.ID)
				s.kept[sb.ID] = size
			}
			if wall := now.Sub(prev.Time); wall > 0 {
				d.PausedGiBHours = float64(size) / gib * wall.Hours()
			}
		}
		if sb.Life.PauseKind != "frozen" {
			// Its box is gone: the one it resumes into counts from
			// zero.
			d.CPUMark = 0
		}
		ds = append(ds, d)
	}
	if err := s.db.AddUsage(ctx, ds); err != nil {
		return err
	}
	seen := make(map[string]bool, len(ds))
	for _, d := range ds {
		seen[d.SandboxID] = true
		s.marks[d.SandboxID] = store.UsageMark{Time: d.Time, CPUMark: d.CPUMark, EgressMark: d.EgressMark}
	}
	for id := range s.marks {
		if !seen[id] {
			delete(s.marks, id)
		}
	}
	for _, sb := range running {
		delete(s.kept, sb.ID)
	}
	for id := range s.kept {
		if !seen[id] {
			delete(s.kept, id)
		}
	}
	return nil
}

// mark returns sandbox id's last metered sample, from memory or, after a
// restart, from the store.
func (s *Sampler) mark(ctx context.Context, id string) (store.UsageMark, bool, error) {
	if m, ok := s.marks[id]; ok {
		return m, true, nil
	}
	return s.db.LastUsageMark(ctx, id)
}

// teamOf is the store id of sb's team: usage is metered to the team the
// sandbox belongs to.
func teamOf(sb *store.Sandbox) string {
	if sb.Team == "" {
		return store.DefaultTeamID
	}
	return sb.Team
}
