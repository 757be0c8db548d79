package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/webhook"
	"github.com/sbxdev/sbx/wire"
)

// EventStore is what the event, webhook and audit routes need of the
// store (the server's *store.DB has it).
type EventStore interface {
	ListEvents(ctx context.Context, f store.EventFilter) ([]*store.Event, error)
	PutWebhook(ctx context.Context, w *store.Webhook) error
	GetWebhook(ctx context.Context, id string) (*store.Webhook, error)
	ListWebhooks(ctx context.Context, team string) ([]*store.Webhook, error)
	DeleteWebhook(ctx context.Context, id string) error
	WebhookDeliveries(ctx context.Context, id string, limit int) ([]*store.Delivery, error)
	PutAudit(ctx context.Context, r *store.AuditRecord) error
	ListAudit(ctx context.Context, f store.AuditFilter) ([]*store.AuditRecord, error)
}

// WebhookURLs checks the URL of a webhook being registered (SSRF); the
// server's *webhook.Guard does.
type WebhookURLs interface {
	CheckURL(raw string) error
}

// Bounds of webhook fields and lists.
const (
	maxWebhookName   = 128
	maxWebhookSecret = 256
	maxWebhooks      = 100
	maxListLimit     = 1000
)

func (s *Server) events() (EventStore, error) {
	if s.cfg.Events == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "this server keeps no events")
	}
	return s.cfg.Events, nil
}

// paging reads limit (default def, at most maxListLimit) and offset.
func paging(r *http.Request, def int) (limit, offset int, err error) {
	q := r.URL.Query()
	if limit, err = atoiDefault(q.Get("limit"), def); err != nil {
		return 0, 0, err
	}
	if limit == 0 || limit > maxListLimit {
		return 0, 0, errdefs.New(errdefs.ErrInvalidArgument, "limit must be from 1 to %d", maxListLimit)
	}
	if offset, err = atoiDefault(q.Get("offset"), 0); err != nil {
		return 0, 0, err
	}
	return limit, offset, nil
}

// FleetSandboxes finds sandboxes of every node sharing the store.
type FleetSandboxes interface {
	GetSandbox(ctx context.Context, id string) (*store.Sandbox, error)
}

// anySandbox returns sandbox id, this node's or (with Config.Fleet)
// another's.
func (s *Server) anySandbox(ctx context.Context, id string) (*store.Sandbox, error) {
	sb, err := s.mgr.Get(ctx, id)
	if err == nil || s.cfg.Fleet == nil || !errors.Is(err, errdefs.ErrNotFound) {
		return sb, err
	}
	return s.cfg.Fleet.GetSandbox(ctx, id)
}

// listEvents answers GET /events/sandboxes and
// GET /events/sandboxes/{sandboxID}: newest first unless orderAsc=true.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) error {
	db, err := s.events()
	if err != nil {
		return err
	}
	limit, offset, err := paging(r, 100)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := store.EventFilter{SandboxID: r.PathValue("sandboxID"), TeamID: teamOf(r), Limit: limit, Offset: offset}
	known := false
	if f.SandboxID != "" {
		// Events are in the store whatever node owns the sandbox (or
		// owned it, if that node was lost): answer here, but only of a
		// sandbox of the caller's team.
		sb, err := s.anySandbox(r.Context(), f.SandboxID)
		switch {
		case err == nil:
			if err := ownedSandbox(r, sb); err != nil {
				return err
			}
			known = true
		case !errors.Is(err, errdefs.ErrNotFound):
			return err
		}
	}
	switch q.Get("orderAsc") {
	case "", "false":
	case "true":
		f.Asc = true
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "orderAsc must be true or false")
	}
	for _, t := range q["type"] {
		if !slices.Contains(wire.EventTypes, t) {
			return errdefs.New(errdefs.ErrInvalidArgument, "unknown event type %q", t)
		}
		f.Types = append(f.Types, t)
	}
	evs, err := db.ListEvents(r.Context(), f)
	if err != nil {
		return err
	}
	if f.SandboxID != "" && !known && len(evs) == 0 && offset == 0 {
		// No record and no events: a sandbox that never was (a killed
		// one keeps its events until they are pruned).
		return errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", f.SandboxID)
	}
	out := make([]wire.SandboxEvent, 0, len(evs))
	for _, ev := range evs {
		out = append(out, webhook.Body(ev))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func webhookOut(h *store.Webhook) wire.Webhook {
	return wire.Webhook{ID: h.ID, Name: h.Name, URL: h.URL, Events: h.Events, Enabled: h.Enabled, CreatedAt: h.CreatedAt}
}

// checkWebhook validates a webhook's fields as they are to be stored.
func (s *Server) checkWebhook(h *store.Webhook) error {
	if h.Name == "" || len(h.Name) > maxWebhookName {
		return errdefs.New(errdefs.ErrInvalidArgument, "name: 1 to %d bytes required", maxWebhookName)
	}
	if h.Secret == "" || len(h.Secret) > maxWebhookSecret {
		return errdefs.New(errdefs.ErrInvalidArgument, "signatureSecret: 1 to %d bytes required", maxWebhookSecret)
	}
	if len(h.Events) == 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "events: at least one event type is required")
	}
	var evs []string
	for _, e := range h.Events {
		if !slices.Contains(wire.EventTypes, e) {
			return errdefs.New(errdefs.ErrInvalidArgument, "events: unknown event type %q", e)
		}
		if !slices.Contains(evs, e) {
			evs = append(evs, e)
		}
	}
	h.Events = evs
	if s.cfg.WebhookURLs == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, "this server sends no webhooks")
	}
	return s.cfg.WebhookURLs.CheckURL(h.URL)
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) error {
	db, err := s.events()
	if err != nil {
		return err
	}
	var req wire.NewWebhook
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	h := &store.Webhook{
		ID: uuid.NewString(), TeamID: teamOf(r), Name: req.Name, URL: req.URL, Events: req.Events,
		Enabled: req.Enabled == nil || *req.Enabled, Secret: req.SignatureSecret, CreatedAt: time.Now().UTC(),
	}
	if err := s.checkWebhook(h); err != nil {
		return err
	}
	all, err := db.ListWebhooks(r.Context(), teamOf(r))
	if err != nil {
		return err
	}
	if len(all) >= maxWebhooks {
		return errdefs.New(errdefs.ErrFailedPrecondition, "at most %d webhooks; delete one first", maxWebhooks)
	}
	if err := db.PutWebhook(r.Context(), h); err != nil {
		return err
	}
	auditObject(r, h.ID)
	writeJSON(w, http.StatusCreated, webhookOut(h))
	return nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	db, err := s.events()
	if err != nil {
		return err
	}
	all, err := db.ListWebhooks(r.Context(), teamOf(r))
	if err != nil {
		return err
	}
	out := make([]wire.Webhook, 0, len(all))
	for _, h := range all {
		out = append(out, webhookOut(h))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// webhookOf returns the webhook named by the path, of the caller's team.
func (s *Server) webhookOf(r *http.Request) (EventStore, *store.Webhook, error) {
	db, err := s.events()
	if err != nil {
		return nil, nil, err
	}
	h, err := db.GetWebhook(r.Context(), r.PathValue("webhookID"))
	if err != nil {
		return nil, nil, err
	}
	if h.TeamID != teamOf(r) {
		return nil, nil, errdefs.New(errdefs.ErrNotFound, "webhook %q not found", h.ID)
	}
	return db, h, nil
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request) error {
	_, h, err := s.webhookOf(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookOut(h))
	return nil
}

func (s *Server) updateWebhook(w http.ResponseWriter, r *http.Request) error {
	db, h, err := s.webhookOf(r)
	if err != nil {
		return err
	}
	var req wire.WebhookUpdate
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.Name != nil {
		h.Name = *req.Name
	}
	if req.URL != nil {
		h.URL = *req.URL
	}
	if req.Events != nil {
		h.Events = req.Events
	}
	if req.Enabled != nil {
		h.Enabled = *req.Enabled
	}
	if req.SignatureSecret != nil {
		h.Secret = *req.SignatureSecret
	}
	if err := s.checkWebhook(h); err != nil {
		return err
	}
	if err := db.PutWebhook(r.Context(), h); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookOut(h))
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	db, h, err := s.webhookOf(r)
	if err != nil {
		return err
	}
	if err := db.DeleteWebhook(r.Context(), h.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// webhookDeliveries lists a webhook's deliveries, newest event first.
func (s *Server) webhookDeliveries(w http.ResponseWriter, r *http.Request) error {
	db, h, err := s.webhookOf(r)
	if err != nil {
		return err
	}
	limit, _, err := paging(r, 100)
	if err != nil {
		return err
	}
	ds, err := db.WebhookDeliveries(r.Context(), h.ID, limit)
	if err != nil {
		return err
	}
	out := make([]wire.WebhookDelivery, 0, len(ds))
	for _, d := range ds {
		o := wire.WebhookDelivery{
			EventID: d.Event.ID, Type: d.Event.Type, SandboxID: d.Event.SandboxID, Attempts: d.Attempts,
			DeliveredAt: timePtr(d.DeliveredAt), FailedAt: timePtr(d.FailedAt), LastError: d.LastError,
		}
		if d.DeliveredAt.IsZero() && d.FailedAt.IsZero() {
			o.NextAttemptAt = timePtr(d.NextAt)
		}
		out = append(out, o)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listAudit answers GET /sbx/v1/audit (admin): newest first.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) error {
	db, err := s.events()
	if err != nil {
		return err
	}
	limit, offset, err := paging(r, 100)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := store.AuditFilter{KeyID: q.Get("key"), ObjectID: q.Get("object"), Limit: limit, Offset: offset}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return errdefs.New(errdefs.ErrInvalidArgument, "since must be an RFC 3339 time")
		}
		f.Since = t
	}
	recs, err := db.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]wire.AuditRecord, 0, len(recs))
	for _, a := range recs {
		out = append(out, wire.AuditRecord{
			ID: a.ID, Time: a.At, TeamID: a.TeamID, KeyID: a.KeyID, KeyName: a.KeyName, Admin: a.Admin,
			Method: a.Method, Route: a.Route, ObjectID: a.ObjectID, Status: a.Status, Remote: a.Remote,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
