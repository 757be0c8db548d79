package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// DefaultTeam is the id of sbx's one team, under which every key and
// sandbox falls until teams exist.
const DefaultTeam = "default"

// maxMetricIDs bounds the sandboxes of one GET /sandboxes/metrics, as the
// E2B spec does.
const maxMetricIDs = 100

// MetricsStore is what the metrics routes read: the samples internal/usage
// stores.
type MetricsStore interface {
	SandboxMetrics(ctx context.Context, id string, start, end time.Time) ([]store.SandboxMetric, error)
	LastSandboxMetric(ctx context.Context, id string) (store.SandboxMetric, bool, error)
	TeamMetrics(ctx context.Context, team string, start, end time.Time) ([]store.TeamMetric, error)
}

func metricBody(m store.SandboxMetric) wire.SandboxMetric {
	return wire.SandboxMetric{
		Timestamp: m.Time.UTC(), TimestampUnix: m.Time.Unix(),
		CPUCount: m.CPUCount, CPUUsedPct: m.CPUUsedPct,
		MemUsed: m.MemUsed, MemTotal: m.MemTotal, MemCache: m.MemCache,
		DiskUsed: m.DiskUsed, DiskTotal: m.DiskTotal,
	}
}

// timeRange reads the start and end query parameters (unix seconds, both
// optional, end counting its whole second) with defaults.
func timeRange(r *http.Request, defStart time.Time) (start, end time.Time, err error) {
	start, end = defStart, time.Now()
	q := r.URL.Query()
	if v := q.Get("start"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1<<40 {
			return start, end, errdefs.New(errdefs.ErrInvalidArgument, "start must be a unix time in seconds")
		}
		start = time.Unix(n, 0)
	}
	if v := q.Get("end"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1<<40 {
			return start, end, errdefs.New(errdefs.ErrInvalidArgument, "end must be a unix time in seconds")
		}
		end = time.Unix(n+1, 0).Add(-time.Nanosecond)
	}
	if start.After(end) {
		return start, end, errdefs.New(errdefs.ErrInvalidArgument, "start must not be after end")
	}
	return start, end, nil
}

func (s *Server) sandboxMetrics(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	sb, err := s.mgr.Get(r.Context(), id)
	if err != nil {
		return err
	}
	start, end, err := timeRange(r, sb.CreatedAt)
	if err != nil {
		return err
	}
	ms, err := s.cfg.Metrics.SandboxMetrics(r.Context(), id, start, end)
	if err != nil {
		return err
	}
	out := make([]wire.SandboxMetric, 0, len(ms))
	for _, m := range ms {
		out = append(out, metricBody(m))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) sandboxesMetrics(w http.ResponseWriter, r *http.Request) error {
	raw := r.URL.Query().Get("sandbox_ids")
	if raw == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "sandbox_ids is required: a comma-separated list of sandbox ids")
	}
	ids := strings.Split(raw, ",")
	if len(ids) > maxMetricIDs {
		return errdefs.New(errdefs.ErrInvalidArgument, "sandbox_ids lists %d sandboxes; at most %d", len(ids), maxMetricIDs)
	}
	out := wire.SandboxesWithMetrics{Sandboxes: map[string]wire.SandboxMetric{}}
	for _, id := range ids {
		if id == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "sandbox_ids holds an empty id")
		}
		if _, ok := out.Sandboxes[id]; ok {
			continue
		}
		if sb, err := s.mgr.Get(r.Context(), id); err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				continue // as E2B: sandboxes unknown to the caller are left out
			}
			return err
		} else if ownedSandbox(r, sb) != nil {
			continue // another team's
		}
		m, ok, err := s.cfg.Metrics.LastSandboxMetric(r.Context(), id)
		if err != nil {
			return err
		}
		if ok {
			out.Sandboxes[id] = metricBody(m)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listTeams(w http.ResponseWriter, r *http.Request) error {
	t, err := s.keys.db.GetTeam(r.Context(), teamOf(r))
	if err != nil {
		return err
	}
	id := publicTeamID(t.ID)
	writeJSON(w, http.StatusOK, []wire.Team{{TeamID: id, Name: t.Name, APIKey: requestKey(r), IsDefault: id == DefaultTeam}})
	return nil
}

// team checks the teamID of the path: it must be the key's team.
func team(r *http.Request) error {
	if id, own := r.PathValue("teamID"), publicTeamID(teamOf(r)); id != own {
		return errdefs.New(errdefs.ErrPermissionDenied, "team %q is not this key's team (%s)", id, own)
	}
	return nil
}

func (s *Server) teamSamples(r *http.Request) ([]store.TeamMetric, time.Time, error) {
	if err := team(r); err != nil {
		return nil, time.Time{}, err
	}
	start, end, err := timeRange(r, time.Now().Add(-7*24*time.Hour))
	if err != nil {
		return nil, end, err
	}
	ms, err := s.cfg.Metrics.TeamMetrics(r.Context(), publicTeamID(teamOf(r)), start, end)
	return ms, end, err
}

func startRate(m store.TeamMetric) float64 {
	if m.Interval <= 0 {
		return 0
	}
	return float64(m.Started) / m.Interval.Seconds()
}

func (s *Server) teamMetrics(w http.ResponseWriter, r *http.Request) error {
	ms, _, err := s.teamSamples(r)
	if err != nil {
		return err
	}
	out := make([]wire.TeamMetric, 0, len(ms))
	for _, m := range ms {
		out = append(out, wire.TeamMetric{Timestamp: m.Time.UTC(), TimestampUnix: m.Time.Unix(),
			ConcurrentSandboxes: m.Concurrent, SandboxStartRate: startRate(m)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) teamMetricsMax(w http.ResponseWriter, r *http.Request) error {
	var value func(store.TeamMetric) float64
	switch metric := r.URL.Query().Get("metric"); metric {
	case "concurrent_sandboxes":
		value = func(m store.TeamMetric) float64 { return float64(m.Concurrent) }
	case "sandbox_start_rate":
		value = startRate
	case "":
		return errdefs.New(errdefs.ErrInvalidArgument, "metric is required: concurrent_sandboxes or sandbox_start_rate")
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "metric must be concurrent_sandboxes or sandbox_start_rate")
	}
	ms, end, err := s.teamSamples(r)
	if err != nil {
		return err
	}
	best := wire.MaxTeamMetric{Timestamp: end.Truncate(time.Second).UTC(), TimestampUnix: end.Unix()}
	for i, m := range ms {
		if v := value(m); i == 0 || v > best.Value {
			best = wire.MaxTeamMetric{Timestamp: m.Time.UTC(), TimestampUnix: m.Time.Unix(), Value: v}
		}
	}
	writeJSON(w, http.StatusOK, best)
	return nil
}
