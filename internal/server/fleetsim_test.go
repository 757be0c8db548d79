package server

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to read pg_stat_database

	"github.com/sbxdev/sbx/internal/pgtest"
	"github.com/sbxdev/sbx/internal/store"
)

// BenchmarkFleetPlacement simulates a fleet of 100 nodes holding 10,000
// sandboxes on a real Postgres: node records and sandbox records only (the
// runtime is simulated: nothing starts). While every simulated node renews
// its lease every 5 s and scans for lost nodes every 2 s, as sbx serve
// does, each iteration places one create (the node list, the loads and
// best of K, what fleetRouter.candidates does) and records the sandbox on
// the chosen node. It reports placement p50 and p99 and the statements per
// second Postgres committed over the run:
//
//	go test -run '^$' -bench FleetPlacement -benchtime 3000x ./internal/server
func BenchmarkFleetPlacement(b *testing.B) {
	const nodes, sandboxes = 100, 10_000
	ctx := context.Background()
	dsn := pgtest.Postgres(b)
	db, err := store.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	leases := make([]*store.Node, nodes)
	for i := range leases {
		leases[i] = &store.Node{ID: fmt.Sprintf("n%03d", i), StartedAt: now, RenewedAt: now, LeaseUntil: now.Add(leaseTTL), Advertise: "http://10.0.0.1:1",
			Machine: store.NodeMachine{CPUCount: 64, MemoryTotalBytes: 256 << 30, Disks: []store.NodeDisk{{TotalBytes: 2 << 40, UsedBytes: 1 << 40}}, Templates: []string{"base"}}}
		if err := db.RenewNode(ctx, leases[i]); err != nil {
			b.Fatal(err)
		}
	}
	for i := range sandboxes {
		sb := &store.Sandbox{ID: fmt.Sprintf("sb%06d", i), Template: "base", Runtime: "runc", State: "running", CPUs: 1, MemoryMB: 512, Node: leases[i%nodes].ID, CreatedAt: now}
		if err := db.CreateSandbox(ctx, sb); err != nil {
			b.Fatal(err)
		}
	}

	// The fleet's background load: renewals and loss scans.
	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, n := range leases {
		wg.Add(2)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * leaseRenew / nodes) // spread, as real starts are
			t := time.NewTicker(leaseRenew)
			defer t.Stop()
			for {
				select {
				case <-bg.Done():
					return
				case <-t.C:
					n.RenewedAt = time.Now().UTC()
					n.LeaseUntil = n.RenewedAt.Add(leaseTTL)
					db.RenewNode(bg, n)
				}
			}
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * lossScan / nodes)
			w := &lossWatch{self: n.ID, db: db, log: slog.New(slog.DiscardHandler), now: time.Now}
			t := time.NewTicker(lossScan)
			defer t.Stop()
			for {
				select {
				case <-bg.Done():
					return
				case <-t.C:
					w.scan(bg)
				}
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()

	f := &fleetRouter{self: leases[0].ID, db: db, log: slog.New(slog.DiscardHandler), k: defaultPlacementK}
	commits := func() int64 {
		u, _ := url.Parse(dsn)
		conn, err := sql.Open("pgx", dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		var n int64
		if err := conn.QueryRowContext(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = $1`, u.Path[1:]).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	lat := make([]time.Duration, 0, b.N)
	c0, t0 := commits(), time.Now()
	b.ResetTimer()
	for i := range b.N {
		s := time.Now()
		cands, err := f.candidates(ctx, "base")
		if err != nil || len(cands) != nodes {
			b.Fatalf("candidates: %d, %v", len(cands), err)
		}
		lat = append(lat, time.Since(s))
		sb := &store.Sandbox{ID: fmt.Sprintf("new%06d", i), Template: "base", Runtime: "runc", State: "running", CPUs: 1, MemoryMB: 512, Node: cands[0].ID, CreatedAt: time.Now()}
		if err := db.CreateSandbox(ctx, sb); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	elapsed := time.Since(t0)
	// pg_stat_database is updated when a backend reports, at most every
	// half second or so: let it.
	time.Sleep(time.Second)
	perSec := float64(commits()-c0) / (elapsed + time.Second).Seconds()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(perSec, "pg-stmts/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "placements/s")
}
