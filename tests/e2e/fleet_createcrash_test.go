package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestFleetCreateCrash SIGKILLs the node a create was placed on while it
// creates the sandbox (its record stored, state creating): the node that
// placed it retries on another node, the client gets one running
// sandbox, the pending record ends killed once the node is declared lost,
// the team sees no duplicate, and the killed node, started again, leaves
// nothing of the pending sandbox on its host.
func TestFleetCreateCrash(t *testing.T) {
	dsn, nodes := startFleet(t, 3, "--warm-pool", "0", "--placement-k", "3")
	ctx := ctxFor(t, 8*time.Minute)
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := nodes[0].Client
	// n1 takes no creates: each goes to n2 or n3.
	if err := c.SetNodeStatus(ctx, "n1", "draining"); err != nil {
		t.Fatal(err)
	}

	type result struct {
		sb  *client.Sandbox
		err error
	}
	done := make(chan result, 1)
	go func() {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
		done <- result{sb, err}
	}()
	// The first record in state creating names the node to kill.
	var pending *store.Sandbox
	for deadline := time.Now().Add(time.Minute); pending == nil; {
		all, err := db.ListSandboxes(ctx, "creating")
		if err != nil {
			t.Fatal(err)
		}
		if len(all) > 0 {
			pending = all[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no create began within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var victim *harness.Server
	survivor := map[string]string{"n2": "n3", "n3": "n2"}[pending.Node]
	switch pending.Node {
	case "n2":
		victim = nodes[1]
	case "n3":
		victim = nodes[2]
	default:
		t.Fatalf("the create began on %s, want n2 or n3", pending.Node)
	}
	victim.Crash()
	res := <-done
	if res.err != nil {
		t.Fatalf("create with its node killed mid-create: %v\n%s", res.err, nodes[0].Logs())
	}
	got, err := db.GetSandbox(ctx, res.sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == pending.ID || got.Node != survivor || got.State != "running" {
		t.Fatalf("the create answered %s, %s on %s; want a new sandbox running on %s (the killed node's pending one: %s)", got.ID, got.State, got.Node, survivor, pending.ID)
	}
	t.Logf("%s SIGKILLed while creating %s; the create answered %s on %s", pending.Node, pending.ID, got.ID, got.Node)
	if r := mustRun(t, ctx, res.sb, "echo retried", nil); r.Stdout != "retried\n" {
		t.Fatalf("the retried sandbox: %q", r.Stdout)
	}
	// The pending record ends killed once its node is declared lost.
	for deadline := time.Now().Add(time.Minute); ; {
		rec, err := db.GetSandbox(ctx, pending.ID)
		if errors.Is(err, errdefs.ErrNotFound) || err == nil && rec.State == "killed" {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed node's pending create: %s, want killed", rec.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// No duplicate: the team's one running sandbox is the one answered.
	list, err := c.ListSandboxes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, sb := range list {
		if sb.State == "running" {
			running++
			if sb.SandboxID != res.sb.ID {
				t.Fatalf("a second running sandbox %s beside %s", sb.SandboxID, res.sb.ID)
			}
		}
	}
	if running != 1 {
		t.Fatalf("%d running sandboxes listed, want 1", running)
	}
	// The killed node back: nothing of the pending sandbox stays.
	victim.StartAgain()
	if _, err := os.Stat(filepath.Join(victim.DataDir, "sandboxes", pending.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the pending sandbox's directory on its node once back: %v, want none", err)
	}
	if rec, err := db.GetSandbox(ctx, pending.ID); err == nil && rec.State != "killed" {
		t.Fatalf("the pending sandbox's record once its node is back: %s, want killed or removed", rec.State)
	}
}
