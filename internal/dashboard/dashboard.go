package dashboard

import (
	"log/slog"
	"net/http"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// Config configures the dashboard.
type Config struct {
	// Manager holds the sandboxes.
	Manager *sandbox.Manager
	// Hub tells the streams of lifecycle events; it must be one of the
	// Manager's event sinks.
	Hub *Hub
	// Logger logs; nil discards.
	Logger *slog.Logger
}

// Server serves the dashboard (it is an api.Dashboard). Create it with
// New; Close ends its terminals.
type Server struct {
	mgr    *sandbox.Manager
	hub    *Hub
	log    *slog.Logger
	assets *assets
	agents *agents
	terms  *terminals
	// peers, when set, makes the sandbox stream fleet-wide (fleet.go).
	peers Peers
}

// New returns the dashboard of cfg.Manager's sandboxes.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "dashboard")
	ag := newAgents(cfg.Manager)
	return &Server{
		mgr: cfg.Manager, hub: cfg.Hub, log: log,
		assets: loadAssets(dist, log),
		agents: ag,
		terms:  newTerminals(ag, log),
	}
}

// Close ends the terminals' shells and drops the agents' connections.
func (s *Server) Close() {
	s.terms.closeAll()
	s.agents.hc.CloseIdleConnections()
}

// Sandbox serves the dashboard's routes about sandbox r.PathValue("id")
// (api.Dashboard), by the pattern package api matched.
func (s *Server) Sandbox(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	switch r.Pattern {
	case "GET /dashboard/api/sandboxes/{id}/processes":
		return s.processes(w, r, id)
	case "GET /dashboard/api/sandboxes/{id}/terminal":
		return s.terminal(w, r, id)
	case "GET /dashboard/api/sandboxes/{id}/files":
		return s.listFiles(w, r, id)
	case "DELETE /dashboard/api/sandboxes/{id}/files":
		return s.removeFile(w, r, id)
	case "GET /dashboard/api/sandboxes/{id}/files/content":
		return s.readFile(w, r, id)
	case "PUT /dashboard/api/sandboxes/{id}/files/content":
		return s.writeFile(w, r, id)
	case "POST /dashboard/api/sandboxes/{id}/files/dir":
		return s.makeDir(w, r, id)
	}
	return errdefs.New(errdefs.ErrNotFound, "no dashboard route for %s %s", r.Method, r.URL.Path)
}
