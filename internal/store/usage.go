package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// usageTable holds what each sandbox used, per UTC day (internal/usage
// meters it): running totals that each sample adds to, and the sandbox's
// last sample (its time and its box's cumulative CPU counter), from which
// the next sample, of this server or of the next one after a restart,
// goes on; likewise the byte counter of its link. day is the unix time (seconds) of the UTC day's start; times
// are unix nanoseconds.
var usageTable = `CREATE TABLE sandbox_usage (
	sandbox_id TEXT NOT NULL,
	day BIGINT NOT NULL,
	team_id TEXT NOT NULL,
	run_ns BIGINT NOT NULL,
	vcpu_seconds DOUBLE PRECISION NOT NULL,
	cpu_used_ns BIGINT NOT NULL,
	mem_gib_seconds DOUBLE PRECISION NOT NULL,
	mem_used_gib_seconds DOUBLE PRECISION NOT NULL,
	disk_gib_hours DOUBLE PRECISION NOT NULL,
	egress_bytes BIGINT NOT NULL,
	paused_gib_hours DOUBLE PRECISION NOT NULL,
	last_ts BIGINT NOT NULL,
	last_cpu_ns BIGINT NOT NULL,
	last_egress_bytes BIGINT NOT NULL,
	PRIMARY KEY (sandbox_id, day)
)`

var usageDayIndex = `CREATE INDEX sandbox_usage_day ON sandbox_usage (day)`

// Usage is what a sandbox used over some span (UsageDelta: between two
// samples; UsageRecord: summed over days or sandboxes).
type Usage struct {
	// Run is the time the sandbox was running.
	Run time.Duration
	// VCPUSeconds is its CPU quota (cores) times the seconds it ran.
	VCPUSeconds float64
	// CPUUsed is the CPU time its box's cgroup counted.
	CPUUsed time.Duration
	// MemGiBSeconds is its memory limit (GiB) times the seconds it ran;
	// MemUsedGiBSeconds the memory it used, as sampled, likewise.
	MemGiBSeconds, MemUsedGiBSeconds float64
	// DiskGiBHours is its disk quota (GiB) times the hours it ran.
	DiskGiBHours float64
	// EgressBytes is what it sent through its network link.
	EgressBytes int64
	// PausedGiBHours is the size (GiB) of what it kept while paused
	// times the hours it was paused.
	PausedGiBHours float64
}

// UsageDelta is what one sample adds to a sandbox's usage, with the mark
// the next sample goes on from.
type UsageDelta struct {
	SandboxID, TeamID string
	// Time is the sample's time (its UTC day is the row it adds to).
	Time time.Time
	Usage
	// CPUMark is the box's cumulative CPU counter at Time; EgressMark
	// its link's cumulative sent bytes.
	CPUMark, EgressMark int64
}

// UsageMark is a sandbox's last sample: when, and its box's CPU counter.
type UsageMark struct {
	Time                time.Time
	CPUMark, EgressMark int64
}

// UsageRecord is a sum of usage rows: of one sandbox (SandboxID set) or
// one UTC day (Day set), or of all (neither).
type UsageRecord struct {
	SandboxID string
	Day       time.Time
	Usage
}

// UsageFilter selects usage rows: those of the UTC days that overlap
// [Since, Until) (zero: unbounded), of TeamID when set.
type UsageFilter struct {
	TeamID       string
	Since, Until time.Time
}

// UsageDay is the start of t's UTC day.
func UsageDay(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// AddUsage adds the deltas to their sandboxes' rows and moves their marks,
// in one statement: a sample is stored whole or not at all. Each sandbox
// may appear once.
func (s *DB) AddUsage(ctx context.Context, ds []UsageDelta) error {
	if len(ds) == 0 {
		return nil
	}
	q := `INSERT INTO sandbox_usage (sandbox_id, day, team_id, run_ns, vcpu_seconds, cpu_used_ns,
		mem_gib_seconds, mem_used_gib_seconds, disk_gib_hours, egress_bytes, paused_gib_hours, last_ts, last_cpu_ns, last_egress_bytes) VALUES ` +
		strings.TrimSuffix(strings.Repeat(`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), `, len(ds)), ", ") +
		` ON CONFLICT (sandbox_id, day) DO UPDATE SET
		run_ns = sandbox_usage.run_ns + excluded.run_ns,
		vcpu_seconds = sandbox_usage.vcpu_seconds + excluded.vcpu_seconds,
		cpu_used_ns = sandbox_usage.cpu_used_ns + excluded.cpu_used_ns,
		mem_gib_seconds = sandbox_usage.mem_gib_seconds + excluded.mem_gib_seconds,
		mem_used_gib_seconds = sandbox_usage.mem_used_gib_seconds + excluded.mem_used_gib_seconds,
		disk_gib_hours = sandbox_usage.disk_gib_hours + excluded.disk_gib_hours,
		egress_bytes = sandbox_usage.egress_bytes + excluded.egress_bytes,
		paused_gib_hours = sandbox_usage.paused_gib_hours + excluded.paused_gib_hours,
		last_ts = excluded.last_ts, last_cpu_ns = excluded.last_cpu_ns, last_egress_bytes = excluded.last_egress_bytes`
	args := make([]any, 0, 14*len(ds))
	for _, d := range ds {
		args = append(args, d.SandboxID, UsageDay(d.Time).Unix(), d.TeamID, int64(d.Run), d.VCPUSeconds, int64(d.CPUUsed),
			d.MemGiBSeconds, d.MemUsedGiBSeconds, d.DiskGiBHours, d.EgressBytes, d.PausedGiBHours, d.Time.UnixNano(), d.CPUMark, d.EgressMark)
	}
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("add usage: %w", err)
	}
	return nil
}

// LastUsageMark returns sandbox id's last sample; false when it has none.
func (s *DB) LastUsageMark(ctx context.Context, id string) (UsageMark, bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT last_ts, last_cpu_ns, last_egress_bytes FROM sandbox_usage
		WHERE sandbox_id = ? ORDER BY last_ts DESC LIMIT 1`, id)
	if err != nil {
		return UsageMark{}, false, fmt.Errorf("usage mark of %s: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return UsageMark{}, false, rows.Err()
	}
	var ts, cpu, egress int64
	if err := rows.Scan(&ts, &cpu, &egress); err != nil {
		return UsageMark{}, false, fmt.Errorf("usage mark of %s: %w", id, err)
	}
	return UsageMark{Time: time.Unix(0, ts), CPUMark: cpu, EgressMark: egress}, true, nil
}

// UsageBy sums the rows f selects by "sandbox" (ordered by id), by "day"
// (oldest first) or, for "", into one record.
func (s *DB) UsageBy(ctx context.Context, f UsageFilter, by string) ([]UsageRecord, error) {
	key := map[string]string{"sandbox": "sandbox_id", "day": "day", "": "''"}[by]
	if key == "" {
		return nil, fmt.Errorf("usage by %q: not sandbox or day", by)
	}
	var where []string
	var args []any
	if f.TeamID != "" {
		where, args = append(where, "team_id = ?"), append(args, f.TeamID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "day >= ?"), append(args, UsageDay(f.Since).Unix())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "day < ?"), append(args, f.Until.Unix())
	}
	q := `SELECT ` + key + `, COALESCE(SUM(run_ns), 0), COALESCE(SUM(vcpu_seconds), 0), COALESCE(SUM(cpu_used_ns), 0),
		COALESCE(SUM(mem_gib_seconds), 0), COALESCE(SUM(mem_used_gib_seconds), 0), COALESCE(SUM(disk_gib_hours), 0),
		COALESCE(SUM(egress_bytes), 0), COALESCE(SUM(paused_gib_hours), 0) FROM sandbox_usage`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	if by != "" {
		q += ` GROUP BY ` + key + ` ORDER BY ` + key
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	defer rows.Close()
	var out []UsageRecord
	for rows.Next() {
		var r UsageRecord
		var id string
		var day, run, cpu int64
		var k any = &id
		if by == "day" {
			k = &day
		}
		if err := rows.Scan(k, &run, &r.VCPUSeconds, &cpu, &r.MemGiBSeconds, &r.MemUsedGiBSeconds, &r.DiskGiBHours, &r.EgressBytes, &r.PausedGiBHours); err != nil {
			return nil, fmt.Errorf("usage: %w", err)
		}
		r.Run, r.CPUUsed = time.Duration(run), time.Duration(cpu)
		switch by {
		case "sandbox":
			r.SandboxID = id
		case "day":
			r.Day = time.Unix(day, 0).UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
