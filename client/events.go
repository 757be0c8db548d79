package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sbxdev/sbx/wire"
)

// SandboxEvent is a sandbox lifecycle event (E2B's shape), as listed and
// as webhooks receive it.
type SandboxEvent = wire.SandboxEvent

// SandboxEventData is a SandboxEvent's details.
type SandboxEventData = wire.SandboxEventData

// Webhook is a registered webhook (without its secret).
type Webhook = wire.Webhook

// NewWebhook registers a webhook: Name, URL, Events (the
// sandbox.lifecycle.* types), Enabled (default true) and SignatureSecret.
type NewWebhook = wire.NewWebhook

// WebhookUpdate changes the fields of a webhook that it sets.
type WebhookUpdate = wire.WebhookUpdate

// WebhookDelivery is the state of one event's delivery to a webhook.
type WebhookDelivery = wire.WebhookDelivery

// AuditRecord is one entry of the audit log.
type AuditRecord = wire.AuditRecord

// EventListOptions select events for [Client.ListEvents].
type EventListOptions struct {
	// SandboxID lists one sandbox's events; empty lists all.
	SandboxID string
	// Types keeps only these event types.
	Types []string
	// Limit (server default 100, at most 1000) and Offset page the list.
	Limit, Offset int
	// Ascending lists oldest first; the default is newest first.
	Ascending bool
}

func pageQuery(limit, offset int) url.Values {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if offset > 0 {
		q.Set("offset", strconv.Itoa(offset))
	}
	return q
}

// ListEvents returns sandbox lifecycle events.
func (c *Client) ListEvents(ctx context.Context, opts *EventListOptions) ([]SandboxEvent, error) {
	if opts == nil {
		opts = &EventListOptions{}
	}
	q := pageQuery(opts.Limit, opts.Offset)
	for _, t := range opts.Types {
		q.Add("type", t)
	}
	if opts.Ascending {
		q.Set("orderAsc", "true")
	}
	path := "/events/sandboxes"
	if opts.SandboxID != "" {
		path += "/" + escape(opts.SandboxID)
	}
	var out []SandboxEvent
	if _, err := c.do(ctx, http.MethodGet, path, q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateWebhook registers a webhook.
func (c *Client) CreateWebhook(ctx context.Context, w NewWebhook) (*Webhook, error) {
	var out Webhook
	if _, err := c.do(ctx, http.MethodPost, "/events/webhooks", nil, w, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListWebhooks returns the registered webhooks.
func (c *Client) ListWebhooks(ctx context.Context) ([]Webhook, error) {
	var out []Webhook
	if _, err := c.do(ctx, http.MethodGet, "/events/webhooks", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetWebhook returns webhook id.
func (c *Client) GetWebhook(ctx context.Context, id string) (*Webhook, error) {
	if id == "" {
		return nil, errNoID
	}
	var out Webhook
	if _, err := c.do(ctx, http.MethodGet, "/events/webhooks/"+escape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateWebhook changes webhook id.
func (c *Client) UpdateWebhook(ctx context.Context, id string, u WebhookUpdate) (*Webhook, error) {
	if id == "" {
		return nil, errNoID
	}
	var out Webhook
	if _, err := c.do(ctx, http.MethodPatch, "/events/webhooks/"+escape(id), nil, u, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteWebhook removes webhook id and its pending deliveries.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	if id == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/events/webhooks/"+escape(id), nil, nil, nil)
	return err
}

// WebhookDeliveries returns webhook id's deliveries, newest event first.
func (c *Client) WebhookDeliveries(ctx context.Context, id string) ([]WebhookDelivery, error) {
	if id == "" {
		return nil, errNoID
	}
	var out []WebhookDelivery
	if _, err := c.do(ctx, http.MethodGet, "/events/webhooks/"+escape(id)+"/deliveries", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// AuditOptions select audit records for [Client.ListAudit].
type AuditOptions struct {
	// Since keeps records from this time on.
	Since time.Time
	// KeyID and ObjectID keep one key's, or one object's, records.
	KeyID, ObjectID string
	// Limit (server default 100, at most 1000) and Offset page the list.
	Limit, Offset int
}

// ListAudit returns audit records, newest first. It needs an admin key.
func (c *Client) ListAudit(ctx context.Context, opts *AuditOptions) ([]AuditRecord, error) {
	if opts == nil {
		opts = &AuditOptions{}
	}
	q := pageQuery(opts.Limit, opts.Offset)
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.UTC().Format(time.RFC3339Nano))
	}
	if opts.KeyID != "" {
		q.Set("key", opts.KeyID)
	}
	if opts.ObjectID != "" {
		q.Set("object", opts.ObjectID)
	}
	var out []AuditRecord
	if _, err := c.do(ctx, http.MethodGet, "/sbx/v1/audit", q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}
