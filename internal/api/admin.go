package api

import (
	"math"
	"net/http"

	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/template"
)

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	infos, err := s.templates.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]templateBody, 0, len(infos))
	for _, in := range infos {
		out = append(out, templateBody{
			TemplateID:  in.Name,
			BuildID:     in.Name,
			Aliases:     []string{in.Name},
			Names:       []string{in.Name},
			CPUCount:    int64(math.Ceil(in.Defaults.CPUs)),
			MemoryMB:    in.Defaults.MemoryBytes >> 20,
			SizeBytes:   in.SizeBytes,
			DiskSizeMB:  in.SizeBytes >> 20,
			CreatedAt:   in.Created,
			UpdatedAt:   in.Created,
			BuildStatus: "ready",
			EnvdVersion: EnvdVersion,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("id")
	if err := template.ValidateName(name); err != nil {
		return err
	}
	if err := s.mgr.RemoveTemplate(r.Context(), name, s.templates.Remove); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func keyOut(k *store.APIKey, secret string) keyBody {
	return keyBody{ID: k.ID, Name: k.Name, Key: secret, Prefix: k.Prefix, Admin: k.Admin, CreatedAt: k.CreatedAt}
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.keys.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]keyBody, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyOut(k, ""))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	var req newKey
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	rec, secret, err := s.keys.Create(r.Context(), req.Name, "", false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, keyOut(rec, secret))
	return nil
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request) error {
	if err := s.keys.Delete(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
