package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/secret"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// SecretStore keeps team secrets (internal/store's *DB). Its methods are
// safe for concurrent use; errors are errdefs classes (not-found for
// another team's secret, conflict for a name taken or a lost update).
type SecretStore interface {
	CreateSecret(ctx context.Context, s *store.Secret) error
	GetSecret(ctx context.Context, team, ref string) (*store.Secret, error)
	ListSecrets(ctx context.Context, team, after string, limit int) ([]*store.Secret, error)
	UpdateSecret(ctx context.Context, s *store.Secret, prev int64) error
	DeleteSecret(ctx context.Context, team, id string) error
}

func (s *Server) secrets() (SecretStore, *secret.Keyring, error) {
	if s.cfg.Secrets == nil || s.cfg.SecretKeys == nil {
		return nil, nil, errdefs.New(errdefs.ErrFailedPrecondition, "this server keeps no secrets")
	}
	return s.cfg.Secrets, s.cfg.SecretKeys, nil
}

func secretBody(sec *store.Secret) wire.Secret {
	md := sec.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return wire.Secret{SecretID: sec.ID, Name: sec.Name, CurrentVersion: sec.Version, Metadata: md, CreatedAt: sec.CreatedAt, UpdatedAt: sec.UpdatedAt}
}

func (s *Server) createSecret(w http.ResponseWriter, r *http.Request) error {
	db, keys, err := s.secrets()
	if err != nil {
		return err
	}
	var req wire.NewSecret
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	name, err := secret.CheckName(req.Name)
	if err != nil {
		return err
	}
	if err := secret.CheckValue(req.Value); err != nil {
		return err
	}
	if err := secret.CheckMetadata(req.Metadata); err != nil {
		return err
	}
	var b [10]byte
	rand.Read(b[:])
	now := time.Now().UTC().Truncate(time.Microsecond)
	sec := &store.Secret{ID: "sec_" + hex.EncodeToString(b[:]), Team: teamOf(r), Name: name, Version: 1, Metadata: req.Metadata, CreatedAt: now, UpdatedAt: now}
	sec.Sealed = keys.Seal(sec.ID, req.Value)
	if err := db.CreateSecret(r.Context(), sec); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, secretBody(sec))
	return nil
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) error {
	db, _, err := s.secrets()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return errdefs.New(errdefs.ErrInvalidArgument, "limit must be a number from 1 to 1000")
		}
		limit = n
	}
	list, err := db.ListSecrets(r.Context(), teamOf(r), q.Get("nextToken"), limit+1)
	if err != nil {
		return err
	}
	if len(list) > limit {
		list = list[:limit]
		w.Header().Set("X-Next-Token", list[limit-1].ID)
	}
	out := make([]wire.Secret, 0, len(list))
	for _, sec := range list {
		out = append(out, secretBody(sec))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) error {
	db, _, err := s.secrets()
	if err != nil {
		return err
	}
	sec, err := db.GetSecret(r.Context(), teamOf(r), r.PathValue("secretID"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, secretBody(sec))
	return nil
}

func (s *Server) updateSecret(w http.ResponseWriter, r *http.Request) error {
	db, keys, err := s.secrets()
	if err != nil {
		return err
	}
	var req wire.SecretUpdate
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if err := secret.CheckValue(req.Value); err != nil {
		return err
	}
	if err := secret.CheckMetadata(req.Metadata); err != nil {
		return err
	}
	sec, err := db.GetSecret(r.Context(), teamOf(r), r.PathValue("secretID"))
	if err != nil {
		return err
	}
	prev := sec.Version
	sec.Version++
	sec.Sealed = keys.Seal(sec.ID, req.Value)
	if req.Metadata != nil {
		sec.Metadata = req.Metadata
	}
	sec.UpdatedAt = time.Now().UTC().Truncate(time.Microsecond)
	if err := db.UpdateSecret(r.Context(), sec, prev); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, secretBody(sec))
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	db, _, err := s.secrets()
	if err != nil {
		return err
	}
	sec, err := db.GetSecret(r.Context(), teamOf(r), r.PathValue("secretID"))
	if err != nil {
		return err
	}
	if err := db.DeleteSecret(r.Context(), sec.Team, sec.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkSecretRefs refuses a policy naming a secret team does not have:
// the sandbox would otherwise send the placeholder itself.
func (s *Server) checkSecretRefs(ctx context.Context, team string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	db, _, err := s.secrets()
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, err := db.GetSecret(ctx, team, strings.ToLower(n)); err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				return errdefs.New(errdefs.ErrInvalidArgument, "network.rules: secret %q not found", n)
			}
			return err
		}
	}
	return nil
}
