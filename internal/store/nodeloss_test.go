package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestNodeLoss(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		lease := t0.Add(15 * time.Second)
		for _, id := range []string{"a", "b", "c"} {
			if err := db.RenewNode(ctx, &Node{ID: id, StartedAt: t0, RenewedAt: t0, LeaseUntil: lease}); err != nil {
				t.Fatal(err)
			}
		}
		// A live lease cannot be declared lost.
		if ok, err := db.DeclareNodeLost(ctx, "a", "b", lease, t0.Add(time.Second)); ok || !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("declare a live node lost: %v, %v", ok, err)
		}
		// A released node is gone, not lost.
		if err := db.ReleaseNode(ctx, "c", t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if ok, err := db.DeclareNodeLost(ctx, "c", "b", t0.Add(time.Second), t0.Add(time.Minute)); ok || err != nil {
			t.Fatalf("declare a released node lost: %v, %v", ok, err)
		}
		// Nodes racing to declare a lapsed one: exactly one wins.
		at := lease.Add(time.Second)
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for _, by := range []string{"b", "c", "b", "c"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := db.DeclareNodeLost(ctx, "a", by, lease, at)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					won++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("%d declarations won, want 1", won)
		}
		a, err := db.GetNode(ctx, "a")
		if err != nil || !a.LostAt.Equal(at) || (a.LostBy != "b" && a.LostBy != "c") {
			t.Fatalf("lost node: %+v, %v", a, err)
		}
		// A stale lease (renewed since it was read) is not declared.
		if err := db.RenewNode(ctx, &Node{ID: "b", StartedAt: t0, RenewedAt: at, LeaseUntil: at.Add(15 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		if ok, err := db.DeclareNodeLost(ctx, "b", "a", lease, at.Add(time.Minute)); ok || err != nil {
			t.Fatalf("declare on a stale lease: %v, %v", ok, err)
		}

		// A live node is not removed, nor one holding live sandboxes.
		if err := db.DeleteNode(ctx, "b", at); !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("delete a live node: %v", err)
		}
		sb := &Sandbox{ID: "s1", Node: "a", State: "running", Template: "base", Runtime: "runc"}
		if err := db.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
		if err := db.PutSandbox(ctx, &Sandbox{ID: "s2", Node: "b", State: "running", Template: "base", Runtime: "runc"}); err != nil {
			t.Fatal(err)
		}
		if got, err := db.NodeSandboxes(ctx, "a", "running", "creating"); err != nil || len(got) != 1 || got[0].ID != "s1" {
			t.Fatalf("NodeSandboxes(a) = %v, %v", got, err)
		}
		if err := db.DeleteNode(ctx, "a", at); !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("delete a node holding a running sandbox: %v", err)
		}
		sb.State = "failed"
		if err := db.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteNode(ctx, "a", at); err != nil {
			t.Fatalf("delete a settled lost node: %v", err)
		}
		if _, err := db.GetNode(ctx, "a"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("deleted node: %v", err)
		}
		if err := db.DeleteNode(ctx, "a", at); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("delete a missing node: %v", err)
		}

		// A node back after its loss reads it on renewal, and clears it.
		if ok, err := db.DeclareNodeLost(ctx, "b", "c", at.Add(15*time.Second), at.Add(time.Minute)); !ok || err != nil {
			t.Fatalf("declare b lost: %v, %v", ok, err)
		}
		b := &Node{ID: "b", StartedAt: at, RenewedAt: at.Add(2 * time.Minute), LeaseUntil: at.Add(3 * time.Minute)}
		if err := db.RenewNode(ctx, b); err != nil || !b.LostAt.Equal(at.Add(time.Minute)) || b.LostBy != "c" {
			t.Fatalf("renewal of a lost node: %+v, %v", b, err)
		}
		if err := db.ClearNodeLost(ctx, "b", b.LostAt); err != nil {
			t.Fatal(err)
		}
		if err := db.RenewNode(ctx, b); err != nil || !b.LostAt.IsZero() {
			t.Fatalf("renewal after clearing: %+v, %v", b, err)
		}
	})
}

// TestMoveSandboxFromDown checks the compare-and-set that recovers a lost
// node's sandbox: refused while the node is live or merely lapsed (not
// declared lost), and once it has renewed again; of nodes racing to
// recover one sandbox exactly one wins; a stale version is refused.
func TestMoveSandboxFromDown(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		lease := t0.Add(15 * time.Second)
		for _, id := range []string{"a", "b", "c"} {
			if err := db.RenewNode(ctx, &Node{ID: id, StartedAt: t0, RenewedAt: t0, LeaseUntil: lease}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.PutSandbox(ctx, &Sandbox{ID: "s1", Node: "a", State: "running", Template: "base", Runtime: "runc"}); err != nil {
			t.Fatal(err)
		}
		get := func() *Sandbox {
			t.Helper()
			sb, err := db.GetSandbox(ctx, "s1")
			if err != nil {
				t.Fatal(err)
			}
			return sb
		}
		at := lease.Add(time.Second)
		// Live, then lapsed but neither declared lost nor released: refused.
		for _, now := range []time.Time{t0.Add(time.Second), at} {
			sb := get()
			sb.State = "paused"
			if err := db.MoveSandboxFromDown(ctx, sb, "b", now); !errors.Is(err, ErrStale) {
				t.Fatalf("move at %s from a node not declared lost: %v, want ErrStale", now, err)
			}
		}
		if got := get(); got.Node != "a" || got.State != "running" {
			t.Fatalf("after refused moves: %+v", got)
		}
		if ok, err := db.DeclareNodeLost(ctx, "a", "b", lease, at); !ok || err != nil {
			t.Fatalf("declare a lost: %v, %v", ok, err)
		}
		// b and c race, each twice: exactly one move wins.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []string
		for _, to := range []string{"b", "c", "b", "c"} {
			sb := get()
			wg.Add(1)
			go func() {
				defer wg.Done()
				sb.State, sb.Error = "paused", ""
				err := db.MoveSandboxFromDown(ctx, sb, to, at)
				switch {
				case err == nil:
					mu.Lock()
					won = append(won, to)
					mu.Unlock()
				case !errors.Is(err, ErrStale) || !errors.Is(err, errdefs.ErrConflict):
					t.Errorf("losing move to %s: %v, want ErrStale", to, err)
				}
			}()
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("%d moves won (%v), want 1", len(won), won)
		}
		got := get()
		if got.Node != won[0] || got.State != "paused" {
			t.Fatalf("recovered record: node %s state %s, want %s paused", got.Node, got.State, won[0])
		}
		// The winner owns it now; a move "from down a" at its new version
		// is refused, as the node field no longer says a.
		got.Node = "a"
		if err := db.MoveSandboxFromDown(ctx, got, "b", at); !errors.Is(err, ErrStale) {
			t.Fatalf("move of a recovered sandbox: %v, want ErrStale", err)
		}

		// A node back from the dead (renewed past now) keeps its sandboxes.
		if err := db.PutSandbox(ctx, &Sandbox{ID: "s2", Node: "a", State: "running", Template: "base", Runtime: "runc"}); err != nil {
			t.Fatal(err)
		}
		if err := db.RenewNode(ctx, &Node{ID: "a", StartedAt: t0, RenewedAt: at, LeaseUntil: at.Add(15 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		s2, err := db.GetSandbox(ctx, "s2")
		if err != nil {
			t.Fatal(err)
		}
		if err := db.MoveSandboxFromDown(ctx, s2, "b", at.Add(time.Second)); !errors.Is(err, ErrStale) {
			t.Fatalf("move from a node that renewed: %v, want ErrStale", err)
		}
		// A node that stopped cleanly (released its lease) is down too.
		if err := db.PutSandbox(ctx, &Sandbox{ID: "s3", Node: "c", State: "running", Template: "base", Runtime: "runc"}); err != nil {
			t.Fatal(err)
		}
		if err := db.ReleaseNode(ctx, "c", at); err != nil {
			t.Fatal(err)
		}
		s3, err := db.GetSandbox(ctx, "s3")
		if err != nil {
			t.Fatal(err)
		}
		if err := db.MoveSandboxFromDown(ctx, s3, "b", at.Add(time.Second)); err != nil || s3.Node != "b" {
			t.Fatalf("move from a released node: %v (node %s)", err, s3.Node)
		}
		if err := db.MoveSandboxFromDown(ctx, &Sandbox{ID: "nope", Node: "a"}, "b", at); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("move of an unknown sandbox: %v, want not found", err)
		}
	})
}
