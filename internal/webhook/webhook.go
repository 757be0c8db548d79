// Package webhook delivers sbx's lifecycle events to the webhooks
// registered for them, as E2B does: a JSON POST of the event, signed in
// the e2b-signature header.
//
// # Overview
//
// Events wait in the store's outbox (internal/store), written in the same
// transaction as the state change they report, one row per event and
// webhook. A [Dispatcher] sends the rows that are due, records each
// attempt, and retries failures with exponential backoff and jitter until
// it gives up. Since the outbox is durable, a server killed at any point
// sends what was pending once it is started again; a delivery may then be
// repeated, and receivers recognise repeats by the event id (also in the
// e2b-delivery-id header).
//
// Every connection a delivery makes is checked by a [Guard] at dial time
// (SSRF): loopback, link-local and metadata, private ranges, the host's
// and the sandboxes' addresses and sbx's own are refused unless allowed.
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// Headers of a delivery besides Content-Type.
const (
	// SignatureHeader carries Sign(secret, body).
	SignatureHeader = "e2b-signature"
	// DeliveryIDHeader carries the event id: the same on every attempt.
	DeliveryIDHeader = "e2b-delivery-id"
	// WebhookIDHeader carries the webhook's id.
	WebhookIDHeader = "e2b-webhook-id"
)

// Sign returns E2B's webhook signature of body: the SHA-256 of the secret
// followed by the raw body, base64 without padding.
func Sign(secret string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(secret))
	h.Write(body)
	return base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}

// Body returns the JSON that E2B sends (and GET /events/sandboxes lists)
// for ev.
func Body(ev *store.Event) wire.SandboxEvent {
	out := wire.SandboxEvent{
		ID: ev.ID, Version: "v1", Type: ev.Type, SandboxID: ev.SandboxID, SandboxExecutionID: ev.ExecutionID,
		SandboxTemplateID: ev.Template, SandboxBuildID: ev.BuildID, SandboxTeamID: ev.TeamID, Timestamp: ev.At,
	}
	var data wire.SandboxEventData
	if len(ev.Data) > 0 && json.Unmarshal(ev.Data, &data) == nil {
		out.EventData = &data
	}
	return out
}

// Store is what the Dispatcher needs of the store.
type Store interface {
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]*store.Delivery, error)
	NextDelivery(ctx context.Context) (time.Time, bool, error)
	ClaimDelivery(ctx context.Context, d *store.Delivery, until time.Time) (bool, error)
	RecordAttempt(ctx context.Context, eventID, webhookID string, attempts int, next, delivered, failed time.Time, errText string) error
}

// Config tunes a Dispatcher; zero fields take the defaults.
type Config struct {
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration
	// MaxAttempts is how many attempts are made before giving up
	// (default 12).
	MaxAttempts int
	// FirstRetry is the backoff after the first failure (default 1 s);
	// it doubles after each, up to MaxBackoff (default 10 minutes).
	FirstRetry, MaxBackoff time.Duration
	// Parallel is how many deliveries are sent at once (default 8).
	Parallel int
}

// Dispatcher sends due outbox rows. Create it with New, tell it of new
// events with Stored, run it with Run.
type Dispatcher struct {
	db     Store
	client *http.Client
	cfg    Config
	log    *slog.Logger
	wake   chan struct{}
}

// New returns a Dispatcher sending through guard's client.
func New(db Store, guard *Guard, cfg Config, log *slog.Logger) *Dispatcher {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 12
	}
	if cfg.FirstRetry <= 0 {
		cfg.FirstRetry = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Minute
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	return &Dispatcher{db: db, client: guard.Client(cfg.Timeout), cfg: cfg, log: log, wake: make(chan struct{}, 1)}
}

// Stored wakes the dispatcher for a newly stored event. It never blocks.
func (d *Dispatcher) Stored(*store.Event) {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run sends due deliveries until ctx is cancelled. Deliveries in flight
// when it ends are cut; their rows stay pending (claimed for one attempt
// time) and are sent again later.
func (d *Dispatcher) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
		d.sendDue(ctx)
		wait := time.Minute // a safety net; Stored wakes it sooner
		if next, ok, err := d.db.NextDelivery(ctx); err != nil {
			if ctx.Err() == nil {
				d.log.Error("webhook outbox", "err", err)
			}
		} else if ok {
			// At least a moment: a round that could claim nothing due
			// must not turn into a spin.
			wait = min(max(time.Until(next), 10*time.Millisecond), wait)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// sendDue sends every delivery due now, at most Parallel at once.
func (d *Dispatcher) sendDue(ctx context.Context) {
	for ctx.Err() == nil {
		due, err := d.db.DueDeliveries(ctx, time.Now(), 64)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("webhook outbox", "err", err)
			}
			return
		}
		if len(due) == 0 {
			return
		}
		sem := make(chan struct{}, d.cfg.Parallel)
		var wg sync.WaitGroup
		claimed := 0
		for _, dl := range due {
			// Claimed for one attempt's time and a margin: another
			// server (or this one after a crash) takes it up after that.
			ok, err := d.db.ClaimDelivery(ctx, dl, time.Now().Add(d.cfg.Timeout+5*time.Second))
			if err != nil {
				if ctx.Err() == nil {
					d.log.Error("claim webhook delivery", "event_id", dl.Event.ID, "err", err)
				}
				continue
			}
			if !ok {
				continue // another server has it
			}
			claimed++
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				d.attempt(ctx, dl)
			}()
		}
		wg.Wait()
		if claimed == 0 {
			return // none could be claimed: wait rather than spin
		}
	}
}

// attempt sends dl once and records the outcome.
func (d *Dispatcher) attempt(ctx context.Context, dl *store.Delivery) {
	log := d.log.With("event_id", dl.Event.ID, "webhook_id", dl.WebhookID, "type", dl.Event.Type, "sandbox_id", dl.Event.SandboxID)
	err := d.send(ctx, dl)
	if ctx.Err() != nil {
		return // shutting down: the row stays pending
	}
	n := dl.Attempts + 1
	now := time.Now().UTC()
	var next, delivered, failed time.Time
	errText := ""
	switch {
	case err == nil:
		delivered, next = now, now
		log.Debug("webhook delivered", "attempts", n)
	case n >= d.cfg.MaxAttempts:
		failed, next, errText = now, now, err.Error()
		log.Error("webhook delivery failed; giving up", "attempts", n, "err", err)
	default:
		next, errText = now.Add(d.backoff(n)), err.Error()
		log.Warn("webhook delivery failed; will retry", "attempts", n, "next", next, "err", err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.db.RecordAttempt(rctx, dl.Event.ID, dl.WebhookID, n, next, delivered, failed, errText); err != nil {
		log.Error("record webhook attempt", "err", err)
	}
}

// backoff is the wait after the n-th failed attempt: FirstRetry doubled
// n-1 times, at most MaxBackoff, less a random part of up to a half (so
// that deliveries failing together do not retry in step).
func (d *Dispatcher) backoff(n int) time.Duration {
	b := d.cfg.MaxBackoff
	if n-1 < 30 {
		b = min(d.cfg.FirstRetry<<(n-1), d.cfg.MaxBackoff)
	}
	return b - rand.N(b/2+1)
}

func (d *Dispatcher) send(ctx context.Context, dl *store.Delivery) error {
	body, err := json.Marshal(Body(dl.Event))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sbx-webhook")
	req.Header.Set(SignatureHeader, Sign(dl.Secret, body))
	req.Header.Set(DeliveryIDHeader, dl.Event.ID)
	req.Header.Set(WebhookIDHeader, dl.WebhookID)
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}
