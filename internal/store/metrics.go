package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// metricsTables hold the resource samples of sandboxes (internal/usage
// takes them) and of the team: every column an int64 is BIGINT, times are
// unix nanoseconds.
var metricsTables = []string{
	`CREATE TABLE sandbox_metrics (
		sandbox_id TEXT NOT NULL,
		ts BIGINT NOT NULL,
		cpu_count BIGINT NOT NULL,
		cpu_used_pct DOUBLE PRECISION NOT NULL,
		cpu_nanos BIGINT NOT NULL,
		mem_used BIGINT NOT NULL,
		mem_total BIGINT NOT NULL,
		mem_cache BIGINT NOT NULL,
		disk_used BIGINT NOT NULL,
		disk_total BIGINT NOT NULL,
		PRIMARY KEY (sandbox_id, ts)
	)`,
	`CREATE TABLE team_metrics (
		team_id TEXT NOT NULL,
		ts BIGINT NOT NULL,
		concurrent BIGINT NOT NULL,
		started BIGINT NOT NULL,
		interval_ns BIGINT NOT NULL,
		PRIMARY KEY (team_id, ts)
	)`,
	`CREATE INDEX sandbox_metrics_ts ON sandbox_metrics (ts)`,
}

// SandboxMetric is one resource sample of a sandbox.
type SandboxMetric struct {
	SandboxID string
	Time      time.Time
	CPUCount  int64
	// CPUUsedPct is the share of CPUCount cores used since the sample
	// before, 0 to 100.
	CPUUsedPct float64
	// CPUNanos is the box's CPU time so far, from which the next sample's
	// CPUUsedPct is worked out.
	CPUNanos            int64
	MemUsed, MemTotal   int64
	MemCache            int64
	DiskUsed, DiskTotal int64
}

// TeamMetric is one sample of a team's sandboxes: how many ran, and how
// many started in the Interval before it.
type TeamMetric struct {
	TeamID     string
	Time       time.Time
	Concurrent int64
	Started    int64
	Interval   time.Duration
}

const sandboxMetricColumns = `sandbox_id, ts, cpu_count, cpu_used_pct, cpu_nanos, mem_used, mem_total, mem_cache, disk_used, disk_total`

// PutSandboxMetrics stores samples; one already stored for the same
// sandbox and time is kept.
func (s *DB) PutSandboxMetrics(ctx context.Context, ms []SandboxMetric) error {
	if len(ms) == 0 {
		return nil
	}
	q := `INSERT INTO sandbox_metrics (` + sandboxMetricColumns + `) VALUES ` +
		strings.TrimSuffix(strings.Repeat(`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?), `, len(ms)), ", ") +
		` ON CONFLICT (sandbox_id, ts) DO NOTHING`
	args := make([]any, 0, 10*len(ms))
	for _, m := range ms {
		args = append(args, m.SandboxID, m.Time.UnixNano(), m.CPUCount, m.CPUUsedPct, m.CPUNanos,
			m.MemUsed, m.MemTotal, m.MemCache, m.DiskUsed, m.DiskTotal)
	}
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("put sandbox metrics: %w", err)
	}
	return nil
}

// SandboxMetrics returns sandbox id's samples taken from start to end
// (both included), oldest first.
func (s *DB) SandboxMetrics(ctx context.Context, id string, start, end time.Time) ([]SandboxMetric, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+sandboxMetricColumns+` FROM sandbox_metrics
		WHERE sandbox_id = ? AND ts >= ? AND ts <= ? ORDER BY ts`, id, start.UnixNano(), end.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("sandbox metrics of %s: %w", id, err)
	}
	defer rows.Close()
	var out []SandboxMetric
	for rows.Next() {
		var m SandboxMetric
		var ts int64
		if err := rows.Scan(&m.SandboxID, &ts, &m.CPUCount, &m.CPUUsedPct, &m.CPUNanos,
			&m.MemUsed, &m.MemTotal, &m.MemCache, &m.DiskUsed, &m.DiskTotal); err != nil {
			return nil, fmt.Errorf("sandbox metrics of %s: %w", id, err)
		}
		m.Time = time.Unix(0, ts)
		out = append(out, m)
	}
	return out, rows.Err()
}

// LastSandboxMetric returns sandbox id's newest sample; false when it has
// none.
func (s *DB) LastSandboxMetric(ctx context.Context, id string) (SandboxMetric, bool, error) {
	ms, err := s.lastSandboxMetrics(ctx, id)
	if err != nil || len(ms) == 0 {
		return SandboxMetric{}, false, err
	}
	return ms[0], true, nil
}

func (s *DB) lastSandboxMetrics(ctx context.Context, id string) ([]SandboxMetric, error) {
	var ts int64
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(ts), -1) FROM sandbox_metrics WHERE sandbox_id = ?`, id).Scan(&ts)
	if err != nil {
		return nil, fmt.Errorf("sandbox metrics of %s: %w", id, err)
	}
	if ts < 0 {
		return nil, nil
	}
	t := time.Unix(0, ts)
	return s.SandboxMetrics(ctx, id, t, t)
}

// PutTeamMetric stores a team sample; one already stored for the same
// team and time is kept.
func (s *DB) PutTeamMetric(ctx context.Context, m TeamMetric) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO team_metrics (team_id, ts, concurrent, started, interval_ns)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (team_id, ts) DO NOTHING`,
		m.TeamID, m.Time.UnixNano(), m.Concurrent, m.Started, int64(m.Interval)); err != nil {
		return fmt.Errorf("put team metric: %w", err)
	}
	return nil
}

// TeamMetrics returns team's samples taken from start to end (both
// included), oldest first.
func (s *DB) TeamMetrics(ctx context.Context, team string, start, end time.Time) ([]TeamMetric, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT team_id, ts, concurrent, started, interval_ns FROM team_metrics
		WHERE team_id = ? AND ts >= ? AND ts <= ? ORDER BY ts`, team, start.UnixNano(), end.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("team metrics: %w", err)
	}
	defer rows.Close()
	var out []TeamMetric
	for rows.Next() {
		var m TeamMetric
		var ts, iv int64
		if err := rows.Scan(&m.TeamID, &ts, &m.Concurrent, &m.Started, &iv); err != nil {
			return nil, fmt.Errorf("team metrics: %w", err)
		}
		m.Time, m.Interval = time.Unix(0, ts), time.Duration(iv)
		out = append(out, m)
	}
	return out, rows.Err()
}

// PruneMetrics deletes the samples of sandboxes whose record is gone, and
// thins samples older than before to the first of each bucket (sandbox
// and team samples alike), so that what is kept per sandbox grows by one
// sample a bucket past that age.
func (s *DB) PruneMetrics(ctx context.Context, before time.Time, bucket time.Duration) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sandbox_metrics
		WHERE sandbox_id NOT IN (SELECT id FROM sandboxes)`); err != nil {
		return fmt.Errorf("prune sandbox metrics: %w", err)
	}
	b := int64(bucket)
	if b <= 0 {
		return nil
	}
	// A sample goes when an earlier one is in its bucket (ts / b * b is
	// the bucket's start: integer division on BIGINT in SQLite and
	// PostgreSQL alike), which the primary key finds by range.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sandbox_metrics WHERE ts < ? AND EXISTS (
		SELECT 1 FROM sandbox_metrics o WHERE o.sandbox_id = sandbox_metrics.sandbox_id
		AND o.ts >= sandbox_metrics.ts / ? * ? AND o.ts < sandbox_metrics.ts)`, before.UnixNano(), b, b); err != nil {
		return fmt.Errorf("thin sandbox metrics: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM team_metrics WHERE ts < ? AND EXISTS (
		SELECT 1 FROM team_metrics o WHERE o.team_id = team_metrics.team_id
		AND o.ts >= team_metrics.ts / ? * ? AND o.ts < team_metrics.ts)`, before.UnixNano(), b, b); err != nil {
		return fmt.Errorf("thin team metrics: %w", err)
	}
	return nil
}
