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
