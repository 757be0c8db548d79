package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TestDeleteTeamRefused: a team that still owns a key, a live sandbox, a
// snapshot, a volume or a webhook is not removed (failed precondition,
// naming what is left); once they are gone (a killed sandbox is history,
// not an object), it is.
func TestDeleteTeamRefused(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		if err := db.CreateTeam(ctx, &Team{ID: "t1", Name: "one", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		sb := &Sandbox{ID: "sb1", Template: "base", State: "running", Runtime: "runc", CreatedAt: time.Now(), Team: "t1"}
		owned := []struct {
			name         string // as the refusal names one
			make, remove func() error
		}{
			{"API key", func() error {
				return db.PutAPIKey(ctx, &APIKey{ID: "k1", Name: "k1", Hash: "h1", Prefix: "p", CreatedAt: time.Now(), Team: "t1"})
			}, func() error { return db.DeleteAPIKey(ctx, "k1") }},
			{"sandbox", func() error { return db.CreateSandbox(ctx, sb) }, func() error {
				sb.State = "killed"
				return db.UpdateSandbox(ctx, sb)
			}},
			{"snapshot", func() error {
				return db.PutSnapshot(ctx, &Snapshot{ID: "sn1", SandboxID: "sb1", Template: "base", Kind: "files", State: "ready", CreatedAt: time.Now(), Team: "t1"})
			}, func() error { return db.DeleteSnapshot(ctx, "sn1") }},
			{"volume", func() error {
				return db.CreateVolume(ctx, &Volume{ID: "v1", Name: "v1", SizeMB: 10, CreatedAt: time.Now(), Team: "t1"})
			}, func() error { return db.DeleteVolume(ctx, "v1") }},
			{"webhook", func() error {
				return db.PutWebhook(ctx, &Webhook{ID: "w1", TeamID: "t1", Name: "w", URL: "http://127.0.0.1:1/", Events: []string{"sandbox.lifecycle.created"}, Enabled: true, CreatedAt: time.Now()})
			}, func() error { return db.DeleteWebhook(ctx, "w1") }},
		}
		for _, o := range owned {
			if err := o.make(); err != nil {
				t.Fatalf("make %s: %v", o.name, err)
			}
			err := db.DeleteTeam(ctx, "t1")
			if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), `team "one" still has 1 `+o.name+`; remove`) {
				t.Errorf("delete a team with its %s: %v; want refused naming it", o.name, err)
			}
			if _, err := db.GetTeam(ctx, "t1"); err != nil {
				t.Fatalf("the team after a refused delete: %v", err)
			}
			if err := o.remove(); err != nil {
				t.Fatalf("remove %s: %v", o.name, err)
			}
		}
		if err := db.DeleteTeam(ctx, "t1"); err != nil {
			t.Fatalf("delete the team once it owns nothing (a killed sandbox left): %v", err)
		}
		if _, err := db.GetTeam(ctx, "t1"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("the deleted team: %v, want not found", err)
		}
		if err := db.DeleteTeam(ctx, "t1"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("delete it again: %v, want not found", err)
		}
		if err := db.DeleteTeam(ctx, DefaultTeamID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("delete the default team: %v, want refused", err)
		}
	})
}
