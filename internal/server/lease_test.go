package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/store"
)

func TestMeasureMachine(t *testing.T) {
	dir := t.TempDir()
	var cpu cpuSampler
	m := measureMachine(dir, &cpu)
	if m.CPUCount <= 0 || m.MemoryTotalBytes <= 0 || m.MemoryUsedBytes <= 0 || m.MemoryUsedBytes > m.MemoryTotalBytes || m.CPUArchitecture == "" {
		t.Fatalf("machine = %+v", m)
	}
	if len(m.Disks) != 1 {
		t.Fatalf("disks = %+v", m.Disks)
	}
	d := m.Disks[0]
	if d.TotalBytes <= 0 || d.UsedBytes < 0 || d.UsedBytes > d.TotalBytes || d.FilesystemType == "" ||
		!(d.MountPoint == "/" || strings.HasPrefix(dir, d.MountPoint)) {
		t.Fatalf("disk of %s = %+v", dir, d)
	}
	if p := measureMachine(dir, &cpu).CPUPercent; p < 0 || p > 100 {
		t.Fatalf("cpu percent %d", p)
	}
}

// TestNodeLease checks that a lease is renewed into the nodes table and
// given up when its server stops.
func TestNodeLease(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := newNodeLease(db, "n1", t.TempDir(), slog.New(slog.DiscardHandler))
	if err := l.renew(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := db.GetNode(ctx, "n1")
	if err != nil || !n.LeaseUntil.After(time.Now()) || n.LeaseUntil.After(time.Now().Add(leaseTTL)) || n.Machine.CPUCount <= 0 || n.Version == "" {
		t.Fatalf("after renew: %+v, %v", n, err)
	}
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); l.run(lctx) }()
	stop()
	<-done
	if n, err := db.GetNode(ctx, "n1"); err != nil || n.LeaseUntil.After(time.Now()) {
		t.Fatalf("after stop: %+v, %v; want the lease given up", n, err)
	}
}
