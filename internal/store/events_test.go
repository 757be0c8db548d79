package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TestOutbox checks the outbox's life: an event queued with its state
// change for the subscribed, enabled webhooks only; a claim that only one
// of two readers wins; attempts recorded; pruning.
func TestOutbox(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		t0 := time.Unix(1700000000, 0).UTC()
		for _, w := range []*Webhook{
			{ID: "on", TeamID: DefaultTeamID, Name: "a", URL: "http://a", Events: []string{"sandbox.lifecycle.created"}, Enabled: true, Secret: "s", CreatedAt: t0},
			{ID: "off", TeamID: DefaultTeamID, Name: "b", URL: "http://b", Events: []string{"sandbox.lifecycle.created"}, Enabled: false, Secret: "s", CreatedAt: t0},
			{ID: "other", TeamID: DefaultTeamID, Name: "c", URL: "http://c", Events: []string{"sandbox.lifecycle.killed"}, Enabled: true, Secret: "s", CreatedAt: t0},
		} {
			if err := db.PutWebhook(ctx, w); err != nil {
				t.Fatal(err)
			}
		}
		sb := &Sandbox{ID: "sb1", Template: "base", State: "creating", Runtime: "runc", CreatedAt: t0}
		if err := db.CreateSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
		stale := *sb
		sb.State = "running"
		ev := &Event{ID: "ev1", Type: "sandbox.lifecycle.created", SandboxID: "sb1", TeamID: DefaultTeamID, At: t0}
		if err := db.UpdateSandboxEvent(ctx, sb, ev); err != nil {
			t.Fatal(err)
		}
		if sb.Version != 1 {
			t.Errorf("version after the update: %d", sb.Version)
		}
		// A stale update stores neither the move nor its event.
		stale.State = "killed"
		if err := db.UpdateSandboxEvent(ctx, &stale, &Event{ID: "ev2", Type: "sandbox.lifecycle.killed", SandboxID: "sb1", TeamID: DefaultTeamID, At: t0}); !errors.Is(err, ErrStale) {
			t.Fatalf("stale update: %v", err)
		}
		evs, err := db.ListEvents(ctx, EventFilter{})
		if err != nil || len(evs) != 1 || evs[0].ID != "ev1" || string(evs[0].Data) != "{}" {
			t.Fatalf("events: %v %+v", err, evs)
		}
		due, err := db.DueDeliveries(ctx, t0, 10)
		if err != nil || len(due) != 1 || due[0].WebhookID != "on" || due[0].URL != "http://a" || due[0].Secret != "s" {
			t.Fatalf("due: %v %+v", err, due)
		}
		other := *due[0]
		// A disabled webhook's deliveries wait.
		on, _ := db.GetWebhook(ctx, "on")
		on.Enabled = false
		if err := db.PutWebhook(ctx, on); err != nil {
			t.Fatal(err)
		}
		if due, _ := db.DueDeliveries(ctx, t0, 10); len(due) != 0 {
			t.Fatalf("due to a disabled webhook: %+v", due)
		}
		if _, ok, _ := db.NextDelivery(ctx); ok {
			t.Fatal("a disabled webhook's delivery is pending")
		}
		on.Enabled = true
		if err := db.PutWebhook(ctx, on); err != nil {
			t.Fatal(err)
		}
		if ok, err := db.ClaimDelivery(ctx, due[0], t0.Add(time.Minute)); !ok || err != nil {
			t.Fatalf("claim: %v %v", ok, err)
		}
		if ok, err := db.ClaimDelivery(ctx, &other, t0.Add(time.Minute)); ok || err != nil {
			t.Fatalf("second claim of one row: %v %v, want lost", ok, err)
		}
		if due, _ := db.DueDeliveries(ctx, t0.Add(time.Second), 10); len(due) != 0 {
			t.Fatalf("a claimed row is due: %+v", due)
		}
		if next, ok, err := db.NextDelivery(ctx); !ok || err != nil || !next.Equal(t0.Add(time.Minute)) {
			t.Fatalf("next delivery %v %v %v", next, ok, err)
		}
		if err := db.RecordAttempt(ctx, "ev1", "on", 1, t0, t0.Add(2*time.Second), time.Time{}, ""); err != nil {
			t.Fatal(err)
		}
		ds, err := db.WebhookDeliveries(ctx, "on", 10)
		if err != nil || len(ds) != 1 || ds[0].Attempts != 1 || ds[0].DeliveredAt.IsZero() {
			t.Fatalf("deliveries: %v %+v", err, ds)
		}
		if _, ok, _ := db.NextDelivery(ctx); ok {
			t.Error("a delivered row is pending")
		}
		if n, err := db.PruneEvents(ctx, t0.Add(time.Second)); n != 1 || err != nil {
			t.Fatalf("prune: %d %v", n, err)
		}
		if ds, _ := db.WebhookDeliveries(ctx, "on", 10); len(ds) != 0 {
			t.Errorf("deliveries of a pruned event remain: %+v", ds)
		}
		if err := db.DeleteWebhook(ctx, "on"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GetWebhook(ctx, "on"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("deleted webhook: %v", err)
		}
		if err := db.DeleteWebhook(ctx, "on"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("deleting twice: %v", err)
		}
	})
}

func TestAudit(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		t0 := time.Unix(1700000000, 0).UTC()
		for i, r := range []*AuditRecord{
			{ID: "a1", At: t0, KeyID: "k1", Route: "POST /sandboxes", ObjectID: "sb1", Status: 201},
			{ID: "a2", At: t0.Add(time.Hour), KeyID: "k2", Admin: true, Route: "DELETE /sandboxes/{id}", ObjectID: "sb1", Status: 204},
			{ID: "a3", At: t0.Add(2 * time.Hour), Route: "GET /v2/sandboxes", Status: 401},
		} {
			r.TeamID = DefaultTeamID
			if err := db.PutAudit(ctx, r); err != nil {
				t.Fatal(i, err)
			}
		}
		for _, c := range []struct {
			f    AuditFilter
			want string
		}{
			{AuditFilter{}, "a3,a2,a1"},
			{AuditFilter{KeyID: "k1"}, "a1"},
			{AuditFilter{ObjectID: "sb1"}, "a2,a1"},
			{AuditFilter{Since: t0.Add(time.Minute)}, "a3,a2"},
			{AuditFilter{Limit: 1, Offset: 1}, "a2"},
		} {
			recs, err := db.ListAudit(ctx, c.f)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for i, r := range recs {
				if i > 0 {
					got += ","
				}
				got += r.ID
			}
			if got != c.want {
				t.Errorf("ListAudit(%+v) = %s, want %s", c.f, got, c.want)
			}
		}
		if n, err := db.PruneAudit(ctx, t0.Add(90*time.Minute)); n != 2 || err != nil {
			t.Fatalf("prune audit: %d %v", n, err)
		}
	})
}
