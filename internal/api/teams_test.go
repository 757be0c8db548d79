package api

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// TestTeamLimitRoutes: every team limit goes in with POST /sbx/v1/teams,
// comes back in its answer, and is changed alone by PATCH; a negative one
// is 400.
func TestTeamLimitRoutes(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	all := wire.TeamLimits{MaxSandboxes: 1, MaxCPUs: 2, MaxMemoryMB: 3, MaxDiskMB: 4, MaxTimeoutSeconds: 5, MaxPaused: 6, MaxTemplates: 7, MaxVolumeMB: 8}
	body, _ := json.Marshal(wire.NewTeam{Name: "acme", TeamLimits: all})
	var made wire.TeamInfo
	decodeBody(t, s.do(t, "POST", "/sbx/v1/teams", s.adminKey, string(body)), 201, &made)
	if made.TeamLimits != all {
		t.Errorf("created team limits = %+v; want %+v", made.TeamLimits, all)
	}
	var set wire.TeamInfo
	decodeBody(t, s.do(t, "PATCH", "/sbx/v1/teams/acme", s.adminKey, `{"maxTimeoutSeconds": 3600, "maxVolumeMB": 0}`), 200, &set)
	want := all
	want.MaxTimeoutSeconds, want.MaxVolumeMB = 3600, 0
	if set.TeamLimits != want {
		t.Errorf("after PATCH: %+v; want %+v", set.TeamLimits, want)
	}
	var got wire.TeamInfo
	decodeBody(t, s.do(t, "GET", "/sbx/v1/teams/acme", s.adminKey, ""), 200, &got)
	if got.TeamLimits != want {
		t.Errorf("stored: %+v; want %+v", got.TeamLimits, want)
	}
	for _, f := range []string{"maxDiskMB", "maxTimeoutSeconds", "maxPaused", "maxTemplates", "maxVolumeMB"} {
		wantError(t, s.do(t, "PATCH", "/sbx/v1/teams/acme", s.adminKey, `{"`+f+`": -1}`), 400, "must not be negative")
		wantError(t, s.do(t, "POST", "/sbx/v1/teams", s.adminKey, `{"name": "neg", "`+f+`": -1}`), 400, "must not be negative")
	}
	wantError(t, s.do(t, "PATCH", "/sbx/v1/teams/acme", s.adminKey, `{"maxPaused": "many"}`), 400, "must be int64")
}

// TestTemplateQuota: the default team's max-templates counts its
// snapshots and refuses an import of a new template past it, before the
// image is read.
func TestTemplateQuota(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	if err := s.db.PutSnapshot(ctx, &store.Snapshot{ID: "snap1", State: "ready", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if w := s.do(t, "PATCH", "/sbx/v1/teams/default", s.adminKey, `{"maxTemplates": 1}`); w.Code != 200 {
		t.Fatalf("PATCH = %d %s", w.Code, w.Body)
	}
	body := `{"name": "newtpl", "source": "layout", "path": "/nonexistent/layout"}`
	wantError(t, s.do(t, "POST", "/sbx/v1/templates/import", s.adminKey, body), 429, "limit of 1 templates and snapshots (max-templates)")
	if w := s.do(t, "PATCH", "/sbx/v1/teams/default", s.adminKey, `{"maxTemplates": 2}`); w.Code != 200 {
		t.Fatalf("PATCH = %d %s", w.Code, w.Body)
	}
	if w := s.do(t, "POST", "/sbx/v1/templates/import", s.adminKey, body); w.Code == 429 || w.Code/100 == 2 {
		t.Errorf("import within the limit of a missing layout = %d %s; want it past the quota and refused for its path", w.Code, w.Body)
	}
}
