package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func TestNodes(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		if list, err := db.ListNodes(ctx); err != nil || len(list) != 0 {
			t.Fatalf("no nodes yet: %v, %v", list, err)
		}
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
		b := &Node{ID: "b", StartedAt: t0, RenewedAt: t0, LeaseUntil: t0.Add(15 * time.Second), Version: "v1", Commit: "abc", Advertise: "http://10.0.0.2:3000",
			Machine: NodeMachine{CPUCount: 16, MemoryTotalBytes: 64 << 30, CPUModelName: "x", Disks: []NodeDisk{{MountPoint: "/var/lib/sbx", TotalBytes: 1 << 40}}}}
		a := &Node{ID: "a", StartedAt: t0, RenewedAt: t0, LeaseUntil: t0, Version: "v0"}
		for _, n := range []*Node{b, a} {
			if err := db.RenewNode(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		// A renewal moves the lease on.
		b.RenewedAt, b.LeaseUntil, b.Machine.CPUPercent = t0.Add(5*time.Second), t0.Add(20*time.Second), 42
		if err := db.RenewNode(ctx, b); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetNode(ctx, "b")
		if err != nil || !reflect.DeepEqual(got, b) {
			t.Fatalf("GetNode = %+v, %v; want %+v", got, err, b)
		}
		list, err := db.ListNodes(ctx)
		if err != nil || len(list) != 2 || list[0].ID != "a" || list[1].ID != "b" {
			t.Fatalf("ListNodes = %+v, %v", list, err)
		}
		if _, err := db.GetNode(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("GetNode(unknown) = %v", err)
		}

		// Loads count each node's live sandboxes, whichever view asks.
		for _, sb := range []*Sandbox{
			{ID: "1", Node: "a", State: "running", CPUs: 1.5, MemoryMB: 512},
			{ID: "2", Node: "a", State: "running", CPUs: 1, MemoryMB: 256},
			{ID: "3", Node: "a", State: "creating", CPUs: 2, MemoryMB: 1024},
			{ID: "4", Node: "a", State: "paused", CPUs: 8, MemoryMB: 8192},
			{ID: "5", Node: "b", State: "resuming", CPUs: 1, MemoryMB: 128},
			{ID: "6", Node: "b", State: "failed", CPUs: 1, MemoryMB: 128},
		} {
			sb.Template, sb.Runtime = "base", "runc"
			if err := db.PutSandbox(ctx, sb); err != nil {
				t.Fatal(err)
			}
		}
		loads, err := db.ForNode("b").NodeLoads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]NodeLoad{"a": {Running: 2, Starting: 1, CPUs: 4.5, MemoryMB: 1792}, "b": {Starting: 1, CPUs: 1, MemoryMB: 128}}
		if !reflect.DeepEqual(loads, want) {
			t.Fatalf("NodeLoads = %+v, want %+v", loads, want)
		}
	})
}

// TestNodeDrainingAndMove: a node's draining mark survives its renewals and
// comes off again; a sandbox moves between nodes by a compare-and-set on
// its version and node, so of two nodes taking it one wins.
func TestNodeDrainingAndMove(t *testing.T) {
	eachEngine(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := open(t, dsn)
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		n := &Node{ID: "a", StartedAt: t0, RenewedAt: t0, LeaseUntil: t0.Add(15 * time.Second)}
		if err := db.RenewNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := db.SetNodeDraining(ctx, "a", t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := db.RenewNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if got, err := db.GetNode(ctx, "a"); err != nil || !got.DrainingSince.Equal(t0.Add(time.Second)) {
			t.Fatalf("after drain and renewal: %+v, %v", got, err)
		}
		if err := db.SetNodeDraining(ctx, "a", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got, err := db.GetNode(ctx, "a"); err != nil || !got.DrainingSince.IsZero() {
			t.Fatalf("after undrain: %+v, %v", got, err)
		}
		if err := db.SetNodeDraining(ctx, "nope", t0); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("drain of an unknown node: %v", err)
		}

		a := db.ForNode("a")
		sb := &Sandbox{ID: "m1", Template: "base", Runtime: "runc", State: "paused"}
		if err := a.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
		rb, err := db.ForNode("b").GetSandbox(ctx, "m1")
		if store := db.ForNode("b"); store.scoped() {
			if err == nil {
				t.Fatal("node b's view sees node a's sandbox")
			}
			rb, err = db.GetSandbox(ctx, "m1")
		}
		if err != nil {
			t.Fatal(err)
		}
		rc := *rb
		rb.Life.PauseKind = "filesystem"
		if err := db.ForNode("b").MoveSandbox(ctx, rb, "b"); err != nil || rb.Node != "b" {
			t.Fatalf("move to b: %v (node %q)", err, rb.Node)
		}
		if err := db.ForNode("c").MoveSandbox(ctx, &rc, "c"); !errors.Is(err, ErrStale) || !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("second move from the same read: %v, want a stale conflict", err)
		}
		got, err := db.GetSandbox(ctx, "m1")
		if err != nil || got.Node != "b" || got.Life.PauseKind != "filesystem" || got.Version != rb.Version {
			t.Fatalf("after the move: %+v, %v", got, err)
		}
		if err := db.MoveSandbox(ctx, &Sandbox{ID: "gone"}, "b"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("move of a missing sandbox: %v", err)
		}
	})
}
