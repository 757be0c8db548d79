package store

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkUpdateSandbox measures UpdateSandbox (one compare-and-set
// write) on each engine, one writer at a time, and reports its p50 and p99
// beside the mean: go test -run '^$' -bench UpdateSandbox ./internal/store
func BenchmarkUpdateSandbox(b *testing.B) {
	benchSandbox(b, func(ctx context.Context, db *DB, sb *Sandbox, i int) error {
		sb.State = State([]string{"pausing", "running"}[i%2])
		return db.UpdateSandbox(ctx, sb)
	})
}

// BenchmarkGetSandbox measures GetSandbox (one read by id), as
// BenchmarkUpdateSandbox does: go test -run '^$' -bench GetSandbox ./internal/store
func BenchmarkGetSandbox(b *testing.B) {
	benchSandbox(b, func(ctx context.Context, db *DB, sb *Sandbox, _ int) error {
		_, err := db.GetSandbox(ctx, sb.ID)
		return err
	})
}

// benchSandbox runs op b.N times against one stored sandbox on each
// engine and reports the p50 and p99 of one op.
func benchSandbox(b *testing.B, op func(ctx context.Context, db *DB, sb *Sandbox, i int) error) {
	for _, e := range engines() {
		b.Run(e.name, func(b *testing.B) {
			ctx := context.Background()
			db, err := Open(ctx, e.fresh(b))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			sb := &Sandbox{ID: "a", Template: "base", State: "running", Runtime: "runc", CreatedAt: time.Now(),
				Metadata: map[string]string{"user": "alice"}, CPUs: 1, MemoryMB: 512}
			if err := db.CreateSandbox(ctx, sb); err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				if err := op(ctx, db, sb, i); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
