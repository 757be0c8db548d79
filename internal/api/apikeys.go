package api

import (
	"net/http"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// E2B's /api-keys routes: the keys of the caller's own team. Any key of
// the team lists them (masked: the secret is shown once, when made); only
// an admin key of the team makes, renames or removes them. Another team's
// key is not found, as if it did not exist. Keys made here are members of
// the team; admin keys are made by the server's admin (`sbx key create
// --role admin`, POST /sbx/v1/keys).

// keyMask is E2B's mask of a key: "e2b_", the length of what follows it,
// and the first two and last four characters of that.
func keyMask(k *store.APIKey) wire.IdentifierMaskingDetails {
	m := wire.IdentifierMaskingDetails{Prefix: "e2b_", ValueLength: 40}
	if v, ok := strings.CutPrefix(k.Prefix, "e2b_"); ok && len(v) >= 2 {
		m.MaskedValuePrefix = v[:2]
	}
	m.MaskedValueSuffix = k.Suffix
	return m
}

func teamKeyOut(k *store.APIKey) wire.TeamAPIKey {
	return wire.TeamAPIKey{ID: k.ID, Name: k.Name, Mask: keyMask(k), CreatedAt: k.CreatedAt}
}

// teamAdmin refuses r unless its key is an admin of its team.
func teamAdmin(r *http.Request) error {
	if k := keyOf(r); k == nil || !k.Admin {
		return errdefs.New(errdefs.ErrPermissionDenied, "managing the team's API keys needs an admin key of the team")
	}
	return nil
}

// teamKey returns key id when it is of r's team; another team's is not
// found.
func (s *Server) teamKey(r *http.Request, id string) (*store.APIKey, error) {
	keys, err := s.keys.List(r.Context())
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.ID == id && store.TeamOrDefault(k.Team) == teamOf(r) {
			return k, nil
		}
	}
	return nil, errdefs.New(errdefs.ErrNotFound, "api key %q not found", id)
}

func (s *Server) listTeamAPIKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.keys.List(r.Context())
	if err != nil {
		return err
	}
	out := []wire.TeamAPIKey{}
	for _, k := range keys {
		if store.TeamOrDefault(k.Team) == teamOf(r) {
			out = append(out, teamKeyOut(k))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createTeamAPIKey(w http.ResponseWriter, r *http.Request) error {
	if err := teamAdmin(r); err != nil {
		return err
	}
	var req wire.NewTeamAPIKey
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, `"name" is required`)
	}
	rec, secret, err := s.keys.CreateInTeam(r.Context(), teamOf(r), req.Name, "", false)
	if err != nil {
		return err
	}
	auditObject(r, rec.ID)
	writeJSON(w, http.StatusCreated, wire.CreatedTeamAPIKey{ID: rec.ID, Key: secret, Mask: keyMask(rec), Name: rec.Name, CreatedAt: rec.CreatedAt})
	return nil
}

func (s *Server) updateTeamAPIKey(w http.ResponseWriter, r *http.Request) error {
	if err := teamAdmin(r); err != nil {
		return err
	}
	var req wire.UpdateTeamAPIKey
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, `"name" is required`)
	}
	k, err := s.teamKey(r, r.PathValue("apiKeyID"))
	if err != nil {
		return err
	}
	if err := s.keys.Rename(r.Context(), k.ID, req.Name); err != nil {
		return err
	}
	auditObject(r, k.ID)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) deleteTeamAPIKey(w http.ResponseWriter, r *http.Request) error {
	if err := teamAdmin(r); err != nil {
		return err
	}
	k, err := s.teamKey(r, r.PathValue("apiKeyID"))
	if err != nil {
		return err
	}
	if err := s.keys.Delete(r.Context(), k.ID); err != nil {
		return err
	}
	auditObject(r, k.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
