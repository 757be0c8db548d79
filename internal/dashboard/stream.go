package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sbxdev/sbx/internal/api"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// pingInterval is the time between the stream's keep-alive comments.
const pingInterval = 15 * time.Second

// listedStates are the states the stream shows: all but killed (a killed
// sandbox is removed).
var listedStates = []sandbox.State{sandbox.StateCreating, sandbox.StateRunning, sandbox.StatePausing,
	sandbox.StatePaused, sandbox.StateResuming, sandbox.StateFailed}

// Stream serves GET /dashboard/api/sandboxes/stream for team (api.Dashboard):
// a snapshot of team's sandboxes, then an upsert or a remove as each
// lifecycle event is stored, until the request ends (the client goes, or
// its session is revoked). In a fleet (SetPeers) it is the whole fleet's
// list (fleet.go); with ?scope=node, or alone, this node's.
func (s *Server) Stream(w http.ResponseWriter, r *http.Request, team string) error {
	switch scope := r.URL.Query().Get("scope"); scope {
	case "", "fleet":
		if s.peers != nil {
			return s.fleetStream(w, r, team)
		}
	case "node":
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "scope must be node or fleet, not %q", scope)
	}
	rc := http.NewResponseController(w)
	started := false
	return s.nodeEvents(r.Context(), team, func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if !started {
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-store")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if event == "ping" {
			_, err = w.Write([]byte(": ping\n\n"))
		} else {
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
		}
		if err != nil {
			return errClientGone
		}
		if rc.Flush() != nil {
			return errClientGone
		}
		return nil
	})
}

// errClientGone ends a stream whose client went away.
var errClientGone = errors.New("the client went away")

// nodeEvents tells emit of team's sandboxes on this node: a snapshot,
// then an upsert or a remove as each lifecycle event is stored (and
// "ping" now and then, with no value), until ctx ends or emit fails. Only
// an error before the first event is returned: the request's answer.
func (s *Server) nodeEvents(ctx context.Context, team string, emit func(event string, v any) error) error {
	sub, unsubscribe := s.hub.subscribe(team)
	defer unsubscribe()
	// Subscribed before the snapshot is read: a change made meanwhile is
	// in both, never in neither.
	snap, err := s.snapshot(ctx, team)
	if err != nil {
		return err
	}
	if err := emit("snapshot", snap); err != nil {
		return nil
	}
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ping.C:
			if emit("ping", nil) != nil {
				return nil
			}
		case <-sub.lost:
			snap, err := s.snapshot(ctx, team)
			if err != nil {
				return nil
			}
			if emit("snapshot", snap) != nil {
				return nil
			}
		case id := <-sub.ch:
			event, v, err := s.change(ctx, team, id)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("dashboard stream: read sandbox", "sandbox_id", id, "err", err)
				}
				continue
			}
			if emit(event, v) != nil {
				return nil
			}
		}
	}
}

// snapshot is team's sandboxes, as GET /v2/sandboxes lists them.
func (s *Server) snapshot(ctx context.Context, team string) ([]wire.ListedSandbox, error) {
	all, err := s.mgr.List(ctx, sandbox.ListFilter{States: listedStates})
	if err != nil {
		return nil, err
	}
	out := make([]wire.ListedSandbox, 0, len(all))
	for _, sb := range all {
		if store.TeamOrDefault(sb.Team) == store.TeamOrDefault(team) {
			out = append(out, api.Listed(sb))
		}
	}
	return out, nil
}

// change is the event that tells of sandbox id as it is now.
func (s *Server) change(ctx context.Context, team, id string) (string, any, error) {
	sb, err := s.mgr.Get(ctx, id)
	if errors.Is(err, errdefs.ErrNotFound) || (err == nil && sb.State == sandbox.StateKilled) {
		return "remove", wire.DashboardRemoved{SandboxID: id}, nil
	}
	if err != nil {
		return "", nil, err
	}
	if store.TeamOrDefault(sb.Team) != store.TeamOrDefault(team) {
		return "", nil, errdefs.New(errdefs.ErrNotFound, "sandbox %q is another team's", id)
	}
	return "upsert", api.Listed(sb), nil
}
