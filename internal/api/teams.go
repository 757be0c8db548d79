package api

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// Teams. Every key belongs to a team (store.APIKey.Team), and so does
// every sandbox and snapshot (that of the key that made it, or of the
// sandbox it was taken or forked from). A key sees only its team's
// objects: another team's answer the same 404 as an unknown id. An admin
// key of the default team is the server's admin: it alone manages teams,
// keys, nodes, template imports and the audit log.

// teamName is the form of a team's name.
var teamName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// keyOf is the key request r was authenticated with (nil before auth).
func keyOf(r *http.Request) *store.APIKey {
	k, _ := r.Context().Value(ctxKey{}).(*store.APIKey)
	return k
}

// teamOf is the store id of the team of r's key.
func teamOf(r *http.Request) string {
	if k := keyOf(r); k != nil && k.Team != "" {
		return k.Team
	}
	return store.DefaultTeamID
}

// serverAdmin reports whether r's key is an admin key of the default team.
func serverAdmin(r *http.Request) bool {
	k := keyOf(r)
	return k != nil && k.Admin && teamOf(r) == store.DefaultTeamID
}

// publicTeamID is the id a team has in the API: the default team's is
// "default" (as before teams), the others' their store id.
func publicTeamID(id string) string {
	if id == store.DefaultTeamID || id == "" {
		return DefaultTeam
	}
	return id
}

// sandboxRoute is auth for routes about the sandbox of path value id (or
// sandboxID): a sandbox of another team is not found.
func (s *Server) sandboxRoute(h handlerFunc) http.Handler {
	return s.auth(func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		if id == "" {
			id = r.PathValue("sandboxID")
		}
		if err := s.checkSandbox(r, id); err != nil {
			return err
		}
		return h(w, r)
	})
}

// checkSandbox returns the not-found error of an unknown sandbox when
// sandbox id is another team's. A sandbox that does not exist passes: the
// handler answers for it as it always did.
func (s *Server) checkSandbox(r *http.Request, id string) error {
	sb, err := s.mgr.Get(r.Context(), id)
	if err != nil {
		return nil
	}
	return ownedSandbox(r, sb)
}

func ownedSandbox(r *http.Request, sb *sandbox.Sandbox) error {
	if store.TeamOrDefault(sb.Team) != teamOf(r) {
		return errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", sb.ID)
	}
	return nil
}

// templateWrite is auth for the routes that build templates and read
// builds. Templates are the server's, shared by every team (teams of
// their own are not supported yet), so only keys of the default team may
// make or change them; the others may start sandboxes from them.
func (s *Server) templateWrite(h handlerFunc) http.Handler {
	return s.auth(func(w http.ResponseWriter, r *http.Request) error {
		if err := defaultTeamOnly(r); err != nil {
			return err
		}
		return h(w, r)
	})
}

// defaultTeamOnly refuses requests of keys of teams other than the
// default one.
func defaultTeamOnly(r *http.Request) error {
	if teamOf(r) != store.DefaultTeamID {
		return errdefs.New(errdefs.ErrPermissionDenied, "templates are built and changed by keys of the default team only")
	}
	return nil
}

// ownedVolume returns the not-found error of an unknown volume when v is
// another team's.
func ownedVolume(r *http.Request, v *store.Volume) error {
	if store.TeamOrDefault(v.Team) != teamOf(r) {
		return errdefs.New(errdefs.ErrNotFound, "volume %q not found", v.ID)
	}
	return nil
}

// teamSandboxes keeps those of all that belong to r's team.
func teamSandboxes(r *http.Request, all []*sandbox.Sandbox) []*sandbox.Sandbox {
	out := all[:0:0]
	for _, sb := range all {
		if ownedSandbox(r, sb) == nil {
			out = append(out, sb)
		}
	}
	return out
}

// checkSnapshot returns the not-found error of an unknown snapshot when
// ref names a snapshot of another team.
func (s *Server) checkSnapshot(r *http.Request, ref string) error {
	sn, err := s.mgr.Snapshots().Get(r.Context(), ref)
	if err != nil {
		return nil
	}
	if store.TeamOrDefault(sn.Team) != teamOf(r) {
		return errdefs.New(errdefs.ErrNotFound, "snapshot %q not found", ref)
	}
	return nil
}

// teamSnapshots keeps those of all that belong to r's team.
func teamSnapshots(r *http.Request, all []*sandbox.Snapshot) []*sandbox.Snapshot {
	out := all[:0:0]
	for _, sn := range all {
		if store.TeamOrDefault(sn.Team) == teamOf(r) {
			out = append(out, sn)
		}
	}
	return out
}

func teamOut(t *store.Team) wire.TeamInfo {
	return wire.TeamInfo{ID: publicTeamID(t.ID), Name: t.Name, CreatedAt: t.CreatedAt, TeamLimits: wireLimits(t.Limits)}
}

func wireLimits(l store.TeamLimits) wire.TeamLimits {
	return wire.TeamLimits{MaxSandboxes: l.MaxSandboxes, MaxCPUs: l.MaxCPUs, MaxMemoryMB: l.MaxMemoryMB,
		MaxDiskMB: l.MaxDiskMB, MaxTimeoutSeconds: l.MaxTimeoutSec, MaxPaused: l.MaxPaused, MaxTemplates: l.MaxTemplates, MaxVolumeMB: l.MaxVolumeMB}
}

func storeLimits(l wire.TeamLimits) store.TeamLimits {
	return store.TeamLimits{MaxSandboxes: l.MaxSandboxes, MaxCPUs: l.MaxCPUs, MaxMemoryMB: l.MaxMemoryMB,
		MaxDiskMB: l.MaxDiskMB, MaxTimeoutSec: l.MaxTimeoutSeconds, MaxPaused: l.MaxPaused, MaxTemplates: l.MaxTemplates, MaxVolumeMB: l.MaxVolumeMB}
}

// lookupTeam returns the team whose API id or name is ref.
func (s *Server) lookupTeam(r *http.Request, ref string) (*store.Team, error) {
	if ref == DefaultTeam {
		ref = store.DefaultTeamID
	}
	return s.keys.db.GetTeam(r.Context(), ref)
}

func checkLimits(l wire.TeamLimits) error {
	if l.MaxSandboxes < 0 || l.MaxCPUs < 0 || l.MaxMemoryMB < 0 || l.MaxDiskMB < 0 || l.MaxTimeoutSeconds < 0 ||
		l.MaxPaused < 0 || l.MaxTemplates < 0 || l.MaxVolumeMB < 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "team limits must not be negative")
	}
	return nil
}

func (s *Server) createTeam(w http.ResponseWriter, r *http.Request) error {
	var req wire.NewTeam
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if !teamName.MatchString(req.Name) {
		return errdefs.New(errdefs.ErrInvalidArgument, "team name: 1 to 64 letters, digits, '-', '_' or '.'")
	}
	if req.Name == DefaultTeam {
		return errdefs.New(errdefs.ErrConflict, "team %q exists", req.Name)
	}
	if err := checkLimits(req.TeamLimits); err != nil {
		return err
	}
	t := &store.Team{ID: uuid.NewString(), Name: req.Name, CreatedAt: time.Now().UTC(),
		Limits: storeLimits(req.TeamLimits)}
	if err := s.keys.db.CreateTeam(r.Context(), t); err != nil {
		return err
	}
	auditObject(r, t.ID)
	writeJSON(w, http.StatusCreated, teamOut(t))
	return nil
}

func (s *Server) listTeamInfos(w http.ResponseWriter, r *http.Request) error {
	all, err := s.keys.db.ListTeams(r.Context())
	if err != nil {
		return err
	}
	out := make([]wire.TeamInfo, 0, len(all))
	for _, t := range all {
		out = append(out, teamOut(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getTeam(w http.ResponseWriter, r *http.Request) error {
	t, err := s.lookupTeam(r, r.PathValue("teamID"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, teamOut(t))
	return nil
}

func (s *Server) setTeam(w http.ResponseWriter, r *http.Request) error {
	var req wire.TeamUpdate
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	t, err := s.lookupTeam(r, r.PathValue("teamID"))
	if err != nil {
		return err
	}
	l := wireLimits(t.Limits)
	if req.MaxCPUs != nil {
		l.MaxCPUs = *req.MaxCPUs
	}
	for _, f := range []struct {
		to   *int64
		from *int64
	}{
		{&l.MaxSandboxes, req.MaxSandboxes}, {&l.MaxMemoryMB, req.MaxMemoryMB}, {&l.MaxDiskMB, req.MaxDiskMB},
		{&l.MaxTimeoutSeconds, req.MaxTimeoutSeconds}, {&l.MaxPaused, req.MaxPaused}, {&l.MaxTemplates, req.MaxTemplates},
		{&l.MaxVolumeMB, req.MaxVolumeMB},
	} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	if err := checkLimits(l); err != nil {
		return err
	}
	t.Limits = storeLimits(l)
	if err := s.keys.db.SetTeamLimits(r.Context(), t.ID, t.Limits); err != nil {
		return err
	}
	auditObject(r, t.ID)
	writeJSON(w, http.StatusOK, teamOut(t))
	return nil
}

func (s *Server) deleteTeam(w http.ResponseWriter, r *http.Request) error {
	t, err := s.lookupTeam(r, r.PathValue("teamID"))
	if err != nil {
		return err
	}
	if err := s.keys.db.DeleteTeam(r.Context(), t.ID); err != nil {
		return err
	}
	auditObject(r, t.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkTemplateQuota refuses a build or import of a new template name
// when r's team (the default one: it alone builds) holds as many
// templates and snapshots as its limit (max-templates). A rebuild of a
// name that exists makes none.
func (s *Server) checkTemplateQuota(r *http.Request, name string) error {
	t, err := s.keys.db.GetTeam(r.Context(), teamOf(r))
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil || t.Limits.MaxTemplates <= 0 {
		return err
	}
	infos, err := s.templates.List(r.Context())
	if err != nil {
		return err
	}
	base, _, _ := strings.Cut(name, ":")
	for _, in := range infos {
		if in.Name == base {
			return nil
		}
	}
	snaps, err := s.keys.db.TeamSnapshots(r.Context(), t.ID)
	if err != nil {
		return err
	}
	if n := int64(len(infos)) + snaps; n >= t.Limits.MaxTemplates {
		return errdefs.New(errdefs.ErrResourceExhausted, "team %q is at its limit of %d templates and snapshots (max-templates); delete one first", t.Name, t.Limits.MaxTemplates)
	}
	return nil
}
