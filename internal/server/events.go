package server

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/webhook"
)

// EventsConfig is sbx serve's configuration of lifecycle events, webhooks
// and the audit log.
type EventsConfig struct {
	// WebhookAllow lets webhooks reach these otherwise refused ranges
	// (--webhook-allow): private receivers.
	WebhookAllow []netip.Prefix
	// EventsRetention and AuditRetention are how long events (with their
	// deliveries) and audit records are kept (--events-retention,
	// --audit-retention); 0 keeps them forever.
	EventsRetention, AuditRetention time.Duration
}

// events runs webhook delivery and the pruning of old events and audit
// records.
type events struct {
	db    *store.DB
	cfg   EventsConfig
	guard *webhook.Guard
	disp  *webhook.Dispatcher
	log   *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newEvents makes the webhook guard and dispatcher. Webhooks may not
// reach the sandboxes' subnet nor what sandboxes are denied, whatever
// --webhook-allow says about the ranges around them.
func newEvents(cfg Config, db *store.DB, log *slog.Logger) *events {
	subnet := cfg.Net.Subnet
	if !subnet.IsValid() {
		subnet = DefaultSubnet
	}
	deny := append([]netip.Prefix{subnet}, cfg.Net.Deny...)
	g := webhook.NewGuard(cfg.Events.WebhookAllow, deny)
	return &events{
		db: db, cfg: cfg.Events, guard: g, log: log,
		disp: webhook.New(db, g, webhook.Config{}, log.With("component", "webhook")),
	}
}

// start starts delivery and pruning; addr is sbx's listen address, which
// webhooks may not point at.
func (e *events) start(ctx context.Context, addr string) {
	e.guard.SetSelf(addr)
	ctx, e.cancel = context.WithCancel(ctx)
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.disp.Run(ctx)
	}()
	go func() {
		defer e.wg.Done()
		e.prune(ctx)
	}()
}

// stop stops delivery and pruning and waits for them.
func (e *events) stop() {
	if e.cancel != nil {
		e.cancel()
	}
	e.wg.Wait()
}

// prune deletes events and audit records past their retention, at start
// and hourly.
func (e *events) prune(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		if e.cfg.EventsRetention > 0 {
			if n, err := e.db.PruneEvents(ctx, now.Add(-e.cfg.EventsRetention)); err != nil && ctx.Err() == nil {
				e.log.Error("prune events", "err", err)
			} else if n > 0 {
				e.log.Info("pruned old events", "count", n)
			}
		}
		if e.cfg.AuditRetention > 0 {
			if n, err := e.db.PruneAudit(ctx, now.Add(-e.cfg.AuditRetention)); err != nil && ctx.Err() == nil {
				e.log.Error("prune audit log", "err", err)
			} else if n > 0 {
				e.log.Info("pruned old audit records", "count", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
