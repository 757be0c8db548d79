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
