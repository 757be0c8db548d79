package api

import (
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/wire"
)

func (s *Server) domain() *string {
	if s.cfg.Domain == "" {
		return nil
	}
	d := s.cfg.Domain
	return &d
}

func (s *Server) sandboxBody(sb *sandbox.Sandbox) wire.Sandbox {
	b := wire.Sandbox{
		SandboxID:       sb.ID,
		TemplateID:      sb.Template,
		ClientID:        "sbx",
		EnvdVersion:     EnvdVersion,
		EnvdAccessToken: sb.EnvdToken,
		Domain:          s.domain(),
		Alias:           sb.Template,
		Runtime:         sb.Runtime,
	}
	if sb.TrafficToken != "" {
		b.TrafficAccessToken = &sb.TrafficToken
	}
	return b
}

func listed(sb *sandbox.Sandbox) wire.ListedSandbox {
	md := sb.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return wire.ListedSandbox{
		SandboxID:   sb.ID,
		TemplateID:  sb.Template,
		Alias:       sb.Template,
		ClientID:    "sbx",
		StartedAt:   sb.StartedAt,
		EndAt:       sb.EndAt,
		CPUCount:    int64(math.Ceil(sb.CPUs)),
		MemoryMB:    sb.MemoryMB,
		DiskSizeMB:  sb.DiskMB,
		EnvdVersion: EnvdVersion,
		Metadata:    md,
		State:       string(sb.State),
		Runtime:     sb.Runtime,
		PauseKind:   sb.Life.PauseKind,
	}
}

func (s *Server) createSandbox(w http.ResponseWriter, r *http.Request) error {
	var req wire.NewSandbox
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.TemplateID == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "templateID is required")
	}
	if err := s.checkSnapshot(r, req.TemplateID); err != nil {
		return err
	}
	if strings.Contains(req.TemplateID, ":") {
		// "name:tag": that tag's build ("name" alone is the default tag).
		ref, err := template.CanonicalRef(req.TemplateID)
		if err != nil {
			return err
		}
		req.TemplateID = ref
	}
	if err := s.ensureBuiltin(r.Context(), req.TemplateID); err != nil {
		return err
	}
	timeout, err := seconds("timeout", req.Timeout)
	if err != nil {
		return err
	}
	cpus, mem, err := requestedLimits(req.CPUCount, req.MemoryMB)
	if err != nil {
		return err
	}
	life, err := lifecycleParams(&req)
	if err != nil {
		return err
	}
	netPolicy, err := createPolicy(req.AllowInternetAccess, req.Network)
	if err != nil {
		return err
	}
	if err := s.checkPolicySecrets(r.Context(), teamOf(r), netPolicy); err != nil {
		return err
	}
	if life.IAMTokens, err = iamTokens(req.IAM, netPolicy); err != nil {
		return err
	}
	if err := ingressParams(req.Network, &life); err != nil {
		return err
	}
	vols, err := s.volumeMounts(r.Context(), teamOf(r), req.VolumeMounts)
	if err != nil {
		return err
	}
	start := time.Now()
	sb, err := s.mgr.Create(r.Context(), sandbox.CreateParams{
		Template:       req.TemplateID,
		Timeout:        timeout,
		Metadata:       req.Metadata,
		EnvVars:        withEgressCA(netPolicy, req.EnvVars),
		Runtime:        req.Runtime,
		CPUs:           cpus,
		MemoryMB:       mem,
		PrivateTraffic: privateTraffic(req.Network),
		Lifecycle:      life,
		Network:        netPolicy,
		Volumes:        vols,
		Team:           teamOf(r),
	})
	if err != nil {
		return err
	}
	auditObject(r, sb.ID)
	s.observe("create", sb.Runtime, start)
	if o := s.cfg.Observer; o != nil {
		o.Created(sb.ID, sb.Runtime, start)
	}
	s.handedToken(r, sb.ID)
	writeJSON(w, http.StatusCreated, s.sandboxBody(sb))
	return nil
}

// parseMetadataQuery parses E2B's metadata filter: a URL-encoded
// "k=v&k2=v2" string.
func parseMetadataQuery(q string) (map[string]string, error) {
	if q == "" {
		return nil, nil
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "metadata filter must be URL-encoded key=value pairs")
	}
	m := map[string]string{}
	for k, v := range vals {
		m[k] = v[len(v)-1]
	}
	return m, nil
}

func parseStates(vals []string) ([]string, error) {
	var out []string
	for _, v := range vals {
		for _, st := range strings.Split(v, ",") {
			switch sandbox.State(st) {
			case sandbox.StateRunning, sandbox.StatePaused, sandbox.StateFailed:
				out = append(out, st)
			case "":
			default:
				return nil, errdefs.New(errdefs.ErrInvalidArgument, "unknown state %q (running, paused or failed)", st)
			}
		}
	}
	return out, nil
}

func (s *Server) listSandboxes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	md, err := parseMetadataQuery(q.Get("metadata"))
	if err != nil {
		return err
	}
	states, err := parseStates(q["state"])
	if err != nil {
		return err
	}
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
	filter := sandbox.ListFilter{Metadata: md, Template: q.Get("template")}
	if v := q.Get("startedAfter"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return errdefs.New(errdefs.ErrInvalidArgument, "invalid startedAfter: want an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
		filter.StartedAfter = t
	}
	order := q.Get("order")
	if order != "" && order != "asc" && order != "desc" {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid order: want asc or desc")
	}
	for _, st := range states {
		filter.States = append(filter.States, sandbox.State(st))
	}
	all, err := s.mgr.List(r.Context(), filter)
	if err != nil {
		return err
	}
	all = teamSandboxes(r, all)
	if order == "asc" {
		for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
			all[i], all[j] = all[j], all[i]
		}
	}
	running := 0
	for _, sb := range all {
		if sb.State == sandbox.StateRunning {
			running++
		}
	}
	if offset > len(all) {
		offset = len(all)
	}
	page := all[offset:]
	if len(page) > limit {
		page = page[:limit]
		w.Header().Set("X-Next-Token", strconv.Itoa(offset+limit))
	}
	w.Header().Set("X-Total-Running", strconv.Itoa(running))
	out := make([]wire.ListedSandbox, 0, len(page))
	for _, sb := range page {
		out = append(out, listed(sb))
	}
	if err := s.withVolumeMounts(r.Context(), out); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listSandboxesV1 is E2B's deprecated list: running sandboxes only.
func (s *Server) listSandboxesV1(w http.ResponseWriter, r *http.Request) error {
	md, err := parseMetadataQuery(r.URL.Query().Get("metadata"))
	if err != nil {
		return err
	}
	all, err := s.mgr.List(r.Context(), sandbox.ListFilter{States: []sandbox.State{sandbox.StateRunning}, Metadata: md})
	if err != nil {
		return err
	}
	all = teamSandboxes(r, all)
	out := make([]wire.ListedSandbox, 0, len(all))
	for _, sb := range all {
		out = append(out, listed(sb))
	}
	if err := s.withVolumeMounts(r.Context(), out); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getSandbox(w http.ResponseWriter, r *http.Request) error {
	sb, err := s.mgr.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	allowInternet := s.allowInternet(sb.ID)
	ls := listed(sb)
	ls.VolumeMounts = s.sandboxVolumes(r.Context(), sb.ID)
	s.handedToken(r, sb.ID)
	writeJSON(w, http.StatusOK, wire.SandboxDetail{
		ListedSandbox:   ls,
		EnvdAccessToken: sb.EnvdToken,
		Domain:          s.domain(),
		Lifecycle:       lifecycleOf(sb),
		Error:           sb.Error,
		Network:         s.withEgress(networkOf(sb), sb.ID),
		// Egress policy (network.go).
		AllowInternetAccess: allowInternet,
	})
	return nil
}

func (s *Server) killSandbox(w http.ResponseWriter, r *http.Request) error {
	if err := s.mgr.Kill(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	s.holders.forget(r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) setTimeout(w http.ResponseWriter, r *http.Request) error {
	var req wire.TimeoutRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.Timeout == nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "timeout is required")
	}
	d, err := seconds("timeout", req.Timeout)
	if err != nil {
		return err
	}
	if err := s.mgr.SetTimeout(r.Context(), r.PathValue("id"), *d); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	var req wire.RefreshRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	d, err := seconds("duration", req.Duration)
	if err != nil {
		return err
	}
	if _, err := s.mgr.Extend(r.Context(), r.PathValue("id"), d); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) connectSandbox(w http.ResponseWriter, r *http.Request) error {
	var req wire.ConnectRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	d, err := seconds("timeout", req.Timeout)
	if err != nil {
		return err
	}
	// E2B: a paused sandbox is resumed (201), a running one's time to
	// live only ever extended (200).
	start := time.Now()
	sb, resumed, err := s.mgr.Resume(r.Context(), r.PathValue("id"), sandbox.ResumeOptions{Timeout: d, Connect: true, Memory: req.Memory})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if resumed {
		status = http.StatusCreated
		s.observe("resume", sb.Runtime, start)
	}
	s.handedToken(r, sb.ID)
	writeJSON(w, status, s.sandboxBody(sb))
	return nil
}
