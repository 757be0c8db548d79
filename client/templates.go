package client

import (
	"context"
	"net/http"
	"time"
)

// Template describes a sandbox template: the root filesystem and default
// resources that sandboxes start from.
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
	ts := []Template{}
	if _, err := c.do(ctx, http.MethodGet, "/templates", nil, nil, &ts); err != nil {
		return nil, err
	}
	return ts, nil
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
	Name string `json:"name"`
	// Source is ImportRegistry, ImportTarball or ImportLayout.
	Source string `json:"source"`
	// Ref is the image reference, for ImportRegistry.
	Ref string `json:"ref,omitempty"`
	// Path is a path on the server's host, for ImportTarball and
	// ImportLayout.
	Path string `json:"path,omitempty"`
	// Insecure lets the server fetch from the registry over plain HTTP.
	Insecure bool `json:"insecure,omitempty"`
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
	var t Template
	if _, err := c.do(ctx, http.MethodPost, "/sbx/v1/templates/import", nil, opts, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// TemplateSettings are the settable parts of a template: what every
// sandbox made from it starts with. Nil fields are left as they are.
type TemplateSettings struct {
	// StartCmd is a shell command line (run with /bin/sh -c) started in
	// the background in every new sandbox, tagged "start" (reattach with
	// [Sandbox.Connect]); "" removes it, an import's image command
	// included.
	StartCmd *string `json:"startCmd,omitempty"`
	// ReadyCmd is a shell command that must exit 0, ReadyPort a TCP port
	// that must accept connections in the sandbox, before a create
	// returns; "" and 0 remove them.
	ReadyCmd  *string `json:"readyCmd,omitempty"`
	ReadyPort *int    `json:"readyPort,omitempty"`
	// ReadyTimeout is how long a create waits for the ready check, in
	// seconds; 0 is the server's default.
	ReadyTimeout *int `json:"readyTimeout,omitempty"`
	// Env replaces the template's environment defaults.
	Env map[string]string `json:"env,omitempty"`
	// Workdir is the default working directory (absolute).
	Workdir *string `json:"workdir,omitempty"`
	// User is the default user of commands.
	User *string `json:"defaultUser,omitempty"`
	// CPUs and MemoryMB are the default limits; 0 leaves them to the
	// server.
	CPUs     *float64 `json:"cpuCount,omitempty"`
	MemoryMB *int     `json:"memoryMB,omitempty"`
}

// TemplateDetail is everything the server knows of a template
// ([Client.InspectTemplate]).
type TemplateDetail struct {
	TemplateID string    `json:"templateID"`
	CreatedAt  time.Time `json:"createdAt"`
	// Source says where it came from (an image reference or path, or how
	// it was built).
	Source string `json:"source,omitempty"`
	// SizeBytes is the apparent size of its files, DiskBytes what they
	// take on disk. Every sandbox shares this one copy.
	SizeBytes int64 `json:"sizeBytes"`
	DiskBytes int64 `json:"diskBytes"`
	// Layers are the image layers it was flattened from.
	Layers []TemplateLayer `json:"layers"`
	// BuildLayers are a built template's layers (build cache keys),
	// uppermost first, over the root filesystem of template Base.
	BuildLayers []string `json:"buildLayers,omitempty"`
	Base        string   `json:"base,omitempty"`
	User        string   `json:"defaultUser"`
	Env         []string `json:"env"`
	// Workdir is the default working directory of commands.
	Workdir      string   `json:"workdir,omitempty"`
	StartCmd     []string `json:"startCmd"`
	ReadyCmd     string   `json:"readyCmd,omitempty"`
	ReadyPort    int      `json:"readyPort,omitempty"`
	ReadyTimeout int      `json:"readyTimeout,omitempty"`
	// CPUCount and MemoryMB are a sandbox's defaults; the ...Set fields
	// say whether the template sets them (else they are the server's).
	CPUCount    float64 `json:"cpuCount"`
	MemoryMB    int     `json:"memoryMB"`
	CPUCountSet bool    `json:"cpuCountSet"`
	MemoryMBSet bool    `json:"memoryMBSet"`
	// Sandboxes counts the sandboxes using it; it cannot be deleted while
	// this is not zero.
	Sandboxes int `json:"sandboxes"`
}

// TemplateLayer is one image layer of a template.
type TemplateLayer struct {
	Digest    string `json:"digest"`
	SizeBytes int64  `json:"sizeBytes"`
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
	if _, err := c.do(ctx, http.MethodPatch, "/sbx/v1/templates/"+escape(name), nil, st, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
