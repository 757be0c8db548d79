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
