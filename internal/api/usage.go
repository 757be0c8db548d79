package api

import (
	"context"
	"net/http"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// UsageStore is what GET /sbx/v1/usage reads: the usage internal/usage
// meters.
type UsageStore interface {
	UsageBy(ctx context.Context, f store.UsageFilter, by string) ([]store.UsageRecord, error)
}

// usageTime reads an optional time query parameter: RFC 3339, or a UTC
// day as YYYY-MM-DD.
func usageTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil && t.Year() >= 1970 && t.Year() < 10000 {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil && t.Year() >= 1970 {
		return t, nil
	}
	return time.Time{}, errdefs.New(errdefs.ErrInvalidArgument, "%s must be an RFC 3339 time or a YYYY-MM-DD day", name)
}

func usageBody(r store.UsageRecord) wire.UsageRecord {
	out := wire.UsageRecord{
		SandboxID: r.SandboxID, RunSeconds: r.Run.Seconds(), VCPUSeconds: r.VCPUSeconds, CPUSeconds: r.CPUUsed.Seconds(),
		MemoryGiBSeconds: r.MemGiBSeconds, MemoryUsedGiBSeconds: r.MemUsedGiBSeconds, DiskGiBHours: r.DiskGiBHours,
		EgressBytes: r.EgressBytes, PausedGiBHours: r.PausedGiBHours,
	}
	if !r.Day.IsZero() {
		out.Day = r.Day.UTC().Format(time.DateOnly)
	}
	return out
}

// usage answers GET /sbx/v1/usage: the usage of the key's team (or, for
// an admin key, of the team asked for), in all and by sandbox or day.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Usage == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, "usage is not metered on this server")
	}
	q := r.URL.Query()
	teamID := teamOf(r)
	if ref := q.Get("team"); ref != "" {
		// Another team's, or one that does not exist, is refused alike
		// to a key that is not the server's admin: the answer tells
		// nothing of other teams.
		t, err := s.lookupTeam(r, ref)
		if !serverAdmin(r) && (err != nil || t.ID != teamID) {
			return errdefs.New(errdefs.ErrPermissionDenied, "team %q is not this key's team (%s): asking for another team's usage needs an admin API key", ref, publicTeamID(teamID))
		}
		if err != nil {
			return err
		}
		teamID = t.ID
	}
	by := q.Get("by")
	if by != "" && by != "sandbox" && by != "day" {
		return errdefs.New(errdefs.ErrInvalidArgument, "by must be sandbox or day")
	}
	since, err := usageTime(r, "since")
	if err != nil {
		return err
	}
	until, err := usageTime(r, "until")
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		return errdefs.New(errdefs.ErrInvalidArgument, "since must be before until")
	}
	f := store.UsageFilter{TeamID: teamID, Since: since, Until: until}
	total, err := s.cfg.Usage.UsageBy(r.Context(), f, "")
	if err != nil {
		return err
	}
	out := wire.UsageReport{TeamID: publicTeamID(teamID), By: by, Since: since, Until: until, Records: []wire.UsageRecord{}}
	if len(total) == 1 {
		out.Total = usageBody(total[0])
	}
	if by != "" {
		rs, err := s.cfg.Usage.UsageBy(r.Context(), f, by)
		if err != nil {
			return err
		}
		for _, rec := range rs {
			out.Records = append(out.Records, usageBody(rec))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
