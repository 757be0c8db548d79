package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/wire"
)

// Template tags (E2B's Template.assignTags, removeTags, getTags): a
// template name stands for one build per tag; "name" alone is its default
// tag. See internal/template/tags.go for how the store keeps them.

// templateTagger is what the tag routes need of the template store
// (*template.Store).
type templateTagger interface {
	Get(name string) (template.Info, error)
	Tags(ctx context.Context, name string) ([]template.Tag, error)
	Refs(name string) ([]string, error)
	AssignTags(ctx context.Context, target string, tags []string, install func(ctx context.Context, ref string, do func(context.Context, string) error) error) (template.Info, error)
	Publish(ctx context.Context, name string, replace bool) error
}

func (s *Server) tagger() (templateTagger, error) {
	t, ok := s.templates.(templateTagger)
	if !ok {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "this server's template store has no tags")
	}
	return t, nil
}

// tagRequest checks the body of a tag request: ref (the field named
// field, required; hint follows its error) names a template, tags at least
// one valid tag. It returns the template's name and the tags normalised.
func tagRequest(field, hint, ref string, raw []string) (string, []string, error) {
	if ref == "" {
		return "", nil, errdefs.New(errdefs.ErrInvalidArgument, "%q is required%s", field, hint)
	}
	name, _, err := template.ParseRef(ref)
	if err != nil {
		return "", nil, err
	}
	tags, err := normTags(raw)
	if err != nil {
		return "", nil, err
	}
	if len(tags) == 0 {
		return "", nil, errdefs.New(errdefs.ErrInvalidArgument, "\"tags\" must name at least one tag")
	}
	return name, tags, nil
}

// ownTemplate is the not-found error of template ref for a key of a team
// other than the default one, which owns every template: as E2B answers
// for another team's template, and as the spec has it (no 403 on the tag
// routes).
func ownTemplate(r *http.Request, ref string) error {
	if defaultTeamOnly(r) != nil {
		return errdefs.New(errdefs.ErrNotFound, "template %q not found", ref)
	}
	return nil
}

// assignTemplateTags is POST /templates/tags.
func (s *Server) assignTemplateTags(w http.ResponseWriter, r *http.Request) error {
	tg, err := s.tagger()
	if err != nil {
		return err
	}
	var req wire.AssignTemplateTags
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	name, tags, err := tagRequest("target", " (\"name:tag\")", req.Target, req.Tags)
	if err != nil {
		return err
	}
	if err := ownTemplate(r, req.Target); err != nil {
		return err
	}
	// Under the Manager's template guard, as a rebuild: a tag that
	// sandboxes run from keeps its build while they exist.
	src, err := tg.AssignTags(r.Context(), req.Target, tags, s.mgr.Templates().Remove)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if ref := template.Ref(name, t); ref != src.Name {
			if err := tg.Publish(r.Context(), ref, true); err != nil {
				s.log.Error("publishing a template tag to the object store failed; other servers cannot fetch it", "template", ref, "err", err)
			}
		}
	}
	writeJSON(w, http.StatusCreated, wire.AssignedTemplateTags{Tags: tags, BuildID: src.ID()})
	return nil
}

// deleteTemplateTags is DELETE /templates/tags. Every tag must exist
// (else 404, and none is removed); a tag sandboxes use is 409.
func (s *Server) deleteTemplateTags(w http.ResponseWriter, r *http.Request) error {
	tg, err := s.tagger()
	if err != nil {
		return err
	}
	var req wire.DeleteTemplateTags
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	name, tags, err := tagRequest("name", "", req.Name, req.Tags)
	if err != nil {
		return err
	}
	if err := ownTemplate(r, name); err != nil {
		return err
	}
	for _, t := range tags {
		if _, err := tg.Get(template.Ref(name, t)); err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				return errdefs.New(errdefs.ErrNotFound, "template %q has no tag %q", name, t)
			}
			return err
		}
	}
	for _, t := range tags {
		if err := s.mgr.Templates().Remove(r.Context(), template.Ref(name, t), s.templates.Remove); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// templateItem is GET /templates/{templateID}/{item}: GET
// /templates/aliases/{alias} (Template.exists) and GET
// /templates/{templateID}/tags (Template.getTags). /templates/aliases/tags
// is the alias "tags" (Template.exists("tags")), so the tags of a
// template named "aliases" cannot be listed.
func (s *Server) templateItem(w http.ResponseWriter, r *http.Request) error {
	id, item := r.PathValue("templateID"), r.PathValue("item")
	switch {
	case id == "aliases":
		return s.templateAlias(w, r, item)
	case item == "tags":
		return s.listTemplateTags(w, r, id)
	}
	return errdefs.New(errdefs.ErrNotFound, "no route for %s %s", r.Method, r.URL.Path)
}

// listTemplateTags is GET /templates/{templateID}/tags.
func (s *Server) listTemplateTags(w http.ResponseWriter, r *http.Request, name string) error {
	tg, err := s.tagger()
	if err != nil {
		return err
	}
	if template.ValidateName(name) != nil {
		return errdefs.New(errdefs.ErrNotFound, "template %q not found", name)
	}
	tags, err := tg.Tags(r.Context(), name)
	if err != nil {
		return err
	}
	out := make([]wire.TemplateTag, 0, len(tags))
	for _, t := range tags {
		out = append(out, wire.TemplateTag{Tag: t.Tag, BuildID: t.BuildID, CreatedAt: t.Assigned})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// removeTemplateRefs removes template name's tags other than the default
// one, each under the Manager's template guard, before the name itself
// goes. It reports whether it removed any.
func (s *Server) removeTemplateRefs(ctx context.Context, name string) (bool, error) {
	tg, ok := s.templates.(templateTagger)
	if !ok {
		return false, nil
	}
	refs, err := tg.Refs(name)
	if err != nil {
		return false, err
	}
	removed := false
	for _, ref := range refs {
		if ref == name {
			continue
		}
		if err := s.mgr.Templates().Remove(ctx, ref, s.templates.Remove); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return removed, err
		}
		removed = true
	}
	return removed, nil
}
