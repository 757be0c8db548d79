package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/wire"
)

// Pause, resume, snapshots and forks, in E2B's shapes (the e2b SDK's
// Sandbox.pause/betaPause, connect, createSnapshot/listSnapshots/
// deleteSnapshot and fork), with sbx's extensions documented in docs/api.md.

func snapshotOut(sn *sandbox.Snapshot) wire.Snapshot {
	names := []string{sn.ID}
	if sn.Name != "" {
		names = []string{sn.Name}
	}
	return wire.Snapshot{
		SnapshotID: sn.ID,
		Names:      names,
		SandboxID:  sn.SandboxID,
		TemplateID: sn.Template,
		Kind:       sn.Kind,
		CreatedAt:  sn.CreatedAt,
		SizeBytes:  sn.SizeBytes,
	}
}

func (s *Server) pauseSandbox(w http.ResponseWriter, r *http.Request) error {
	var req wire.PauseRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	start := time.Now()
	sb, err := s.mgr.Pause(r.Context(), r.PathValue("id"), req.Memory)
	if err != nil {
		return err
	}
	s.observe("pause", sb.Runtime, start)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) resumeSandbox(w http.ResponseWriter, r *http.Request) error {
	var req wire.ResumeRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	d, err := seconds("timeout", req.Timeout)
	if err != nil {
		return err
	}
	start := time.Now()
	sb, resumed, err := s.mgr.Resume(r.Context(), r.PathValue("id"), sandbox.ResumeOptions{Timeout: d, Memory: req.Memory})
	if err != nil {
		return err
	}
	if resumed {
		s.observe("resume", sb.Runtime, start)
	}
	s.handedToken(r, sb.ID)
	writeJSON(w, http.StatusCreated, s.sandboxBody(sb))
	return nil
}

func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) error {
	var req wire.SnapshotRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	sn, err := s.mgr.Snapshots().Take(r.Context(), r.PathValue("id"), sandbox.SnapshotOptions{Name: req.Name})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, snapshotOut(sn))
	return nil
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := atoiDefault(q.Get("limit"), 100)
	if err != nil {
		return err
	}
	if limit == 0 || limit > 1000 {
		limit = 1000
	}
	offset, err := atoiDefault(q.Get("nextToken"), 0)
	if err != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid nextToken")
	}
	all, err := s.mgr.Snapshots().List(r.Context(), q.Get("sandboxID"))
	if err != nil {
		return err
	}
	all = teamSnapshots(r, all)
	if name := q.Get("name"); name != "" {
		var keep []*sandbox.Snapshot
		for _, sn := range all {
			if sn.ID == name || sn.Name == name {
				keep = append(keep, sn)
			}
		}
		all = keep
	}
	if offset > len(all) {
		offset = len(all)
	}
	page := all[offset:]
	if len(page) > limit {
		page = page[:limit]
		w.Header().Set("X-Next-Token", strconv.Itoa(offset+limit))
	}
	out := make([]wire.Snapshot, 0, len(page))
	for _, sn := range page {
		out = append(out, snapshotOut(sn))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) forkSandbox(w http.ResponseWriter, r *http.Request) error {
	var req wire.ForkRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	n := 1
	if req.Count != nil {
		n = *req.Count
	}
	d, err := seconds("timeout", req.Timeout)
	if err != nil {
		return err
	}
	start := time.Now()
	results, err := s.mgr.Snapshots().Fork(r.Context(), r.PathValue("id"), n, d)
	if err != nil {
		return err
	}
	for _, res := range results {
		if res.Err == nil {
			s.observe("fork", res.Sandbox.Runtime, start)
			break
		}
	}
	out := make([]wire.ForkResult, len(results))
	for i, res := range results {
		if res.Err != nil {
			status := errhttp.Status(res.Err)
			s.log.Warn("fork copy failed", "sandbox_id", r.PathValue("id"), "status", status, "err", res.Err)
			out[i].Error = &wire.Error{Code: status, Message: errdefs.Message(res.Err)}
			continue
		}
		s.handedToken(r, res.Sandbox.ID)
		b := s.sandboxBody(res.Sandbox)
		out[i].Sandbox = &b
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// deleteSnapshotOrTemplate serves DELETE /templates/{id}: the e2b SDK's
// deleteSnapshot deletes a snapshot there.
func (s *Server) deleteSnapshotOrTemplate(w http.ResponseWriter, r *http.Request) error {
	if err := s.checkSnapshot(r, r.PathValue("id")); err != nil {
		return err
	}
	err := s.mgr.Snapshots().Delete(r.Context(), r.PathValue("id"))
	if errors.Is(err, errdefs.ErrNotFound) {
		return s.deleteTemplate(w, r)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// lifecycleOf is a sandbox's lifecycle as the detail shows it.
func lifecycleOf(sb *sandbox.Sandbox) wire.Lifecycle {
	l := wire.Lifecycle{
		AutoResume: sb.Life.AutoResume,
		OnTimeout:  sb.Life.OnTimeout,
		Persistent: sb.Life.Persistent,
		IdlePause:  int64(sb.Life.IdlePause / time.Second),
	}
	if l.OnTimeout == "" {
		l.OnTimeout = "kill"
	}
	return l
}

// lifecycleParams turns a create request's lifecycle fields into the
// Manager's policy.
func lifecycleParams(req *wire.NewSandbox) (sandbox.Lifecycle, error) {
	var l sandbox.Lifecycle
	switch req.Lifecycle {
	case "", "ephemeral":
	case "persistent":
		l.Persistent = true
	default:
		return l, errdefs.New(errdefs.ErrInvalidArgument, `lifecycle must be "ephemeral" or "persistent"`)
	}
	if req.AutoPause != nil {
		l.OnTimeout = "kill"
		if *req.AutoPause {
			l.OnTimeout = "pause"
		}
	}
	if req.AutoPauseMemory != nil {
		if l.OnTimeout != "pause" && !(l.Persistent && l.OnTimeout == "") {
			return l, errdefs.New(errdefs.ErrInvalidArgument, "autoPauseMemory needs autoPause")
		}
		l.TimeoutFilesOnly = !*req.AutoPauseMemory
	}
	if req.AutoResume != nil {
		l.AutoResume = req.AutoResume.Enabled
	}
	d, err := seconds("idlePause", req.IdlePause)
	if err != nil {
		return l, err
	}
	if d != nil {
		l.IdlePause = *d
	}
	return l, nil
}
