package api

import (
	"net/http"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/wire"
)

// Dashboard is what serves the web dashboard (internal/dashboard). The API
// routes its requests, authenticates them (key or session cookie, with the
// CSRF check) and, for the routes about a sandbox, refuses another team's
// sandbox before calling it; a sandbox that does not exist is the
// Dashboard's to answer. Its methods are called from many goroutines at
// once; a request's context ends when it ends or its session is revoked.
type Dashboard interface {
	// SetHeaders sets the security headers (CSP and the rest) of every
	// response under /dashboard/.
	SetHeaders(h http.Header)
	// ServeAssets serves the pages: GET /dashboard/... (no auth).
	ServeAssets(w http.ResponseWriter, r *http.Request)
	// Stream serves the sandboxes of team (a store id) as server-sent
	// events: GET /dashboard/api/sandboxes/stream.
	Stream(w http.ResponseWriter, r *http.Request, team string) error
	// Sandbox serves the route r.Pattern about sandbox r.PathValue("id")
	// (processes, terminal, files).
	Sandbox(w http.ResponseWriter, r *http.Request) error
}

// Listed is a sandbox as GET /v2/sandboxes lists it (the dashboard's
// stream sends the same objects).
func Listed(sb *sandbox.Sandbox) wire.ListedSandbox { return listed(sb) }

// isDashboard reports whether r is for the dashboard.
func isDashboard(r *http.Request) bool {
	return r.URL.Path == "/dashboard" || strings.HasPrefix(r.URL.Path, "/dashboard/")
}

func (s *Server) dashboardAssets(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Dashboard == nil {
		return errdefs.New(errdefs.ErrNotFound, "this server has no dashboard")
	}
	s.cfg.Dashboard.ServeAssets(w, r)
	return nil
}

func (s *Server) dashboardStream(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Dashboard == nil {
		return errdefs.New(errdefs.ErrNotFound, "this server has no dashboard")
	}
	return s.cfg.Dashboard.Stream(w, r, teamOf(r))
}

func (s *Server) dashboardSandbox(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Dashboard == nil {
		return errdefs.New(errdefs.ErrNotFound, "this server has no dashboard")
	}
	return s.cfg.Dashboard.Sandbox(w, r)
}
