package client

import (
	"context"
	"net/http"
	"time"

	"github.com/sbxdev/sbx/wire"
)

// Template describes a sandbox template: the root filesystem and default
// resources that sandboxes start from. It is built from the server's
// [wire.Template]; its own JSON is what `sbx template ls --json` prints.
type Template struct {
	TemplateID  string    `json:"templateID"`
	Aliases     []string  `json:"aliases"`
	CPUCount    int       `json:"cpuCount"`
	MemoryMB    int       `json:"memoryMB"`
	DiskSizeMB  int       `json:"diskSizeMB"`
	SizeBytes   int64     `json:"sizeBytes"`
	CreatedAt   time.Time `json:"createdAt"`
	BuildStatus string    `json:"buildStatus"`
}

// ListTemplates returns every template.
func (c *Client) ListTemplates(ctx context.Context) ([]Template, error) {
	var list []wire.Template
	if _, err := c.do(ctx, http.MethodGet, "/templates", nil, nil, &list); err != nil {
		return nil, err
	}
	ts := make([]Template, 0, len(list))
	for _, t := range list {
		ts = append(ts, templateOf(t))
	}
	return ts, nil
}

// templateOf is the SDK's view of a template.
func templateOf(t wire.Template) Template {
	return Template{
		TemplateID: t.TemplateID, Aliases: t.Aliases, CPUCount: int(t.CPUCount), MemoryMB: int(t.MemoryMB),
		DiskSizeMB: int(t.DiskSizeMB), SizeBytes: t.SizeBytes, CreatedAt: t.CreatedAt, BuildStatus: t.BuildStatus,
	}
}

// DeleteTemplate deletes a template. It fails with [ErrConflict] while
// sandboxes use it.
func (c *Client) DeleteTemplate(ctx context.Context, templateID string) error {
	if templateID == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/templates/"+escape(templateID), nil, nil, nil)
	return err
}

// Image sources for [ImportOptions].Source.
const (
	ImportRegistry = "registry" // Ref names an image in a registry
	ImportTarball  = "tarball"  // Path is a docker-archive (docker save) file on the server
	ImportLayout   = "layout"   // Path is an OCI image layout directory on the server
)

// ImportOptions say where [Client.ImportTemplate] finds an image.
type ImportOptions struct {
	// Name is the new template's name.
	Name string
	// Source is ImportRegistry, ImportTarball or ImportLayout.
	Source string
	// Ref is the image reference, for ImportRegistry.
	Ref string
	// Path is a path on the server's host, for ImportTarball and
	// ImportLayout.
	Path string
	// Insecure lets the server fetch from the registry over plain HTTP.
	Insecure bool
	// TemplateSettings apply over what the image's config says (its
	// environment, working directory, user, and entrypoint plus command
	// as the start command).
	TemplateSettings
}

// ImportTemplate makes a template from an OCI or Docker image and returns
// it once it is in place. It needs an admin API key; it fails with
// [ErrConflict] if the name is taken and [ErrInvalidArgument] for a bad
// name, source or image. Imports run within ctx: a deadline that is too
// short abandons the import.
func (c *Client) ImportTemplate(ctx context.Context, opts ImportOptions) (*Template, error) {
	body := wire.ImportRequest{Name: opts.Name, Source: opts.Source, Ref: opts.Ref, Path: opts.Path, Insecure: opts.Insecure,
		TemplateSettings: opts.TemplateSettings.wire()}
	var t wire.Template
	if _, err := c.do(ctx, http.MethodPost, "/sbx/v1/templates/import", nil, body, &t); err != nil {
		return nil, err
	}
	out := templateOf(t)
	return &out, nil
}

// TemplateSettings are the settable parts of a template: what every
// sandbox made from it starts with. Nil fields are left as they are.
type TemplateSettings struct {
	// StartCmd is a shell command line (run with /bin/sh -c) started in
	// the background in every new sandbox, tagged "start" (reattach with
	// [Sandbox.Connect]); "" removes it, an import's image command
	// included.
	StartCmd *string
	// ReadyCmd is a shell command that must exit 0, ReadyPort a TCP port
	// that must accept connections in the sandbox, before a create
	// returns; "" and 0 remove them.
	ReadyCmd  *string
	ReadyPort *int
	// ReadyTimeout is how long a create waits for the ready check, in
	// seconds; 0 is the server's default.
	ReadyTimeout *int
	// Env replaces the template's environment defaults.
	Env map[string]string
	// Workdir is the default working directory (absolute).
	Workdir *string
	// User is the default user of commands.
	User *string
	// CPUs and MemoryMB are the default limits; 0 leaves them to the
	// server.
	CPUs     *float64
	MemoryMB *int
}

// TemplateDetail is everything the server knows of a template
// ([Client.InspectTemplate]).
type TemplateDetail = wire.TemplateDetail

// TemplateLayer is one image layer of a template.
type TemplateLayer = wire.TemplateLayer

// wire is st as a request body.
func (st TemplateSettings) wire() wire.TemplateSettings {
	w := wire.TemplateSettings{
		StartCmd: st.StartCmd, ReadyCmd: st.ReadyCmd, ReadyPort: st.ReadyPort, ReadyTimeout: st.ReadyTimeout,
		Env: st.Env, Workdir: st.Workdir, User: st.User, CPUCount: st.CPUs,
	}
	if st.MemoryMB != nil {
		m := int64(*st.MemoryMB)
		w.MemoryMB = &m
	}
	return w
}

// InspectTemplate returns everything the server knows of a template.
func (c *Client) InspectTemplate(ctx context.Context, name string) (*TemplateDetail, error) {
	if name == "" {
		return nil, errNoID
	}
	var d TemplateDetail
	if _, err := c.do(ctx, http.MethodGet, "/sbx/v1/templates/"+escape(name), nil, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// SetTemplate changes a template's settings (admin key). Sandboxes already
// running keep what they started with.
func (c *Client) SetTemplate(ctx context.Context, name string, st TemplateSettings) (*TemplateDetail, error) {
	if name == "" {
		return nil, errNoID
	}
	var d TemplateDetail
	if _, err := c.do(ctx, http.MethodPatch, "/sbx/v1/templates/"+escape(name), nil, st.wire(), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// TemplateTag is one tag of a template name: the build it points at and
// when it was given to that build ([Client.TemplateTags]).
type TemplateTag = wire.TemplateTag

// AssignedTemplateTags is what [Client.AssignTemplateTags] did: the tags
// assigned and the build they now point at.
type AssignedTemplateTags = wire.AssignedTemplateTags

// AssignTemplateTags points tags at the build that target names ("name"
// for its default tag, or "name:tag"), as E2B's Template.assignTags: a
// tag that pointed at another build of the name moves. It fails with
// [ErrNotFound] for a target that does not exist and [ErrInvalidArgument]
// for a bad reference or tag.
func (c *Client) AssignTemplateTags(ctx context.Context, target string, tags ...string) (*AssignedTemplateTags, error) {
	if target == "" {
		return nil, errNoID
	}
	var out AssignedTemplateTags
	if _, err := c.do(ctx, http.MethodPost, "/templates/tags", nil, wire.AssignTemplateTags{Target: target, Tags: tags}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TemplateTags returns the tags of template name, the default tag first
// (E2B's Template.getTags). A name without any is [ErrNotFound].
func (c *Client) TemplateTags(ctx context.Context, name string) ([]TemplateTag, error) {
	if name == "" {
		return nil, errNoID
	}
	var out []TemplateTag
	if _, err := c.do(ctx, http.MethodGet, "/templates/"+escape(name)+"/tags", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveTemplateTags removes tags of template name (E2B's
// Template.removeTags): all of them or, when one is missing
// ([ErrNotFound]), none. A tag that sandboxes run from is [ErrConflict].
func (c *Client) RemoveTemplateTags(ctx context.Context, name string, tags ...string) error {
	if name == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/templates/tags", nil, wire.DeleteTemplateTags{Name: name, Tags: tags}, nil)
	return err
}
