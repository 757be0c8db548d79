package api

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/wire"
)

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	infos, err := s.templates.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]wire.Template, 0, len(infos))
	for _, in := range infos {
		out = append(out, s.templateOut(in))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) templateOut(in template.Info) wire.Template {
	cpus, mem := s.mgr.Templates().EffectiveLimits(in.Defaults.CPUs, in.Defaults.MemoryMB)
	return wire.Template{
		TemplateID:  in.Name,
		BuildID:     in.Name,
		Aliases:     []string{in.Name},
		Names:       []string{in.Name},
		CPUCount:    int64(math.Ceil(cpus)),
		MemoryMB:    mem,
		SizeBytes:   in.SizeBytes,
		DiskSizeMB:  in.SizeBytes >> 20,
		CreatedAt:   in.Created,
		UpdatedAt:   in.Created,
		BuildStatus: "ready",
		EnvdVersion: EnvdVersion,
	}
}

// templateImporter is what importing needs of the template store, beyond
// TemplateStore (the server's *template.Store has it).
type templateImporter interface {
	ImportWith(ctx context.Context, name string, img v1.Image, opts template.ImportOptions, progress io.Writer) (template.Info, error)
}

// importTemplate makes a template from an OCI image. Admin only: it reads
// server-side paths and makes the server fetch from any registry.
func (s *Server) importTemplate(w http.ResponseWriter, r *http.Request) error {
	imp, ok := s.templates.(templateImporter)
	if !ok {
		return errdefs.New(errdefs.ErrFailedPrecondition, "this server's template store cannot import images")
	}
	var req wire.ImportRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if err := template.ValidateName(req.Name); err != nil {
		return err
	}
	if err := s.checkTemplateQuota(r, req.Name); err != nil {
		return err
	}
	settings, err := templateSettings(req.TemplateSettings)
	if err != nil {
		return err
	}
	var img v1.Image
	source := req.Source + " " + req.Ref
	switch req.Source {
	case "registry":
		if req.Ref == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, `source "registry" needs "ref"`)
		}
		img, err = template.ImageFromRegistry(r.Context(), req.Ref, req.Insecure)
	case "tarball", "layout":
		if req.Path == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "source %q needs \"path\"", req.Source)
		}
		source = req.Source + " " + req.Path
		if req.Source == "tarball" {
			img, err = template.ImageFromTarball(req.Path)
		} else {
			img, err = template.ImageFromLayout(req.Path)
		}
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, `"source" must be "registry", "tarball" or "layout"`)
	}
	if err != nil {
		return err
	}
	info, err := imp.ImportWith(r.Context(), req.Name, img, template.ImportOptions{Source: source, Settings: settings}, nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.templateOut(info))
	return nil
}

func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("id")
	if err := template.ValidateName(name); err != nil {
		return err
	}
	if err := defaultTeamOnly(r); err != nil {
		return err
	}
	// Its tags go first: one may stand on the name's own rootfs.
	tagged, err := s.removeTemplateRefs(r.Context(), name)
	if err != nil {
		return err
	}
	if err := s.mgr.Templates().Remove(r.Context(), name, s.templates.Remove); err != nil && !(tagged && errors.Is(err, errdefs.ErrNotFound)) {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func keyOut(k *store.APIKey, secret string) wire.Key {
	return wire.Key{ID: k.ID, Name: k.Name, Key: secret, Prefix: k.Prefix, Admin: k.Admin, CreatedAt: k.CreatedAt, Team: publicTeamID(k.Team)}
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.keys.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]wire.Key, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyOut(k, ""))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	var req wire.NewKey
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	team := store.DefaultTeamID
	if req.Team != "" {
		t, err := s.lookupTeam(r, req.Team)
		if err != nil {
			return err
		}
		team = t.ID
	}
	var admin bool
	switch req.Role {
	case "", "member":
	case "admin":
		admin = true
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "role must be admin or member")
	}
	rec, secret, err := s.keys.CreateInTeam(r.Context(), team, req.Name, "", admin)
	if err != nil {
		return err
	}
	auditObject(r, rec.ID)
	writeJSON(w, http.StatusCreated, keyOut(rec, secret))
	return nil
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request) error {
	if err := s.keys.Delete(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	if ss := s.cfg.Sessions; ss != nil {
		// The key's dashboard sessions end with it, streams included.
		if err := ss.RevokeKey(context.WithoutCancel(r.Context()), r.PathValue("id")); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
