package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestMetricsPrune stores samples of a sandbox over two days and checks
// that PruneMetrics keeps the recent ones whole, one per bucket of the old
// ones, and none of a sandbox whose record is gone.
func TestMetricsPrune(t *testing.T) { eachEngine(t, testMetricsPrune) }

func testMetricsPrune(t *testing.T, dsn string) {
	ctx := context.Background()
	db := open(t, dsn)
	sb := &Sandbox{ID: "aaaaaaaaaaaaaaaaaaaa", Template: "base", State: "running", Runtime: "runc", CreatedAt: time.Now()}
	if err := db.CreateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	var ms []SandboxMetric
	for i := range 48 * 60 { // one a minute for two days
		at := now.Add(-time.Duration(i) * time.Minute)
		ms = append(ms, SandboxMetric{SandboxID: sb.ID, Time: at, CPUCount: 1, CPUUsedPct: 12.5, MemUsed: int64(i)},
			SandboxMetric{SandboxID: "gonegonegonegonegone", Time: at})
	}
	for i := 0; i < len(ms); i += 200 {
		if err := db.PutSandboxMetrics(ctx, ms[i:min(i+200, len(ms))]); err != nil {
			t.Fatal(err)
		}
	}
	// Stored twice: kept once.
	if err := db.PutSandboxMetrics(ctx, ms[:2]); err != nil {
		t.Fatal(err)
	}
	if err := db.PutTeamMetric(ctx, TeamMetric{TeamID: "default", Time: now, Concurrent: 2, Started: 1, Interval: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := db.PruneMetrics(ctx, now.Add(-24*time.Hour), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := db.SandboxMetrics(ctx, sb.ID, time.Unix(0, 0), now)
	if err != nil {
		t.Fatal(err)
	}
	// 24*60 recent (the one at exactly -24h included) plus 6 an hour for
	// the 24 hours before.
	if want := 24*60 + 24*6; len(got) < want-1 || len(got) > want+1 {
		t.Fatalf("%d samples kept, want about %d", len(got), want)
	}
	if got[len(got)-1].CPUUsedPct != 12.5 || !got[len(got)-1].Time.Equal(now) {
		t.Fatalf("newest sample %+v", got[len(got)-1])
	}
	last, ok, err := db.LastSandboxMetric(ctx, sb.ID)
	if err != nil || !ok || !last.Time.Equal(now) {
		t.Fatalf("LastSandboxMetric: %+v %v %v", last, ok, err)
	}
	if gone, err := db.SandboxMetrics(ctx, "gonegonegonegonegone", time.Unix(0, 0), now); err != nil || len(gone) != 0 {
		t.Fatalf("samples of a deleted sandbox: %d, %v", len(gone), err)
	}
	tm, err := db.TeamMetrics(ctx, "default", now, now)
	if err != nil || len(tm) != 1 || tm[0].Concurrent != 2 || tm[0].Interval != 5*time.Second {
		t.Fatalf("team metrics: %+v %v", tm, err)
	}
}

// TestObserver checks that SetObserver sees statements and their errors.
func TestObserver(t *testing.T) { eachEngine(t, testObserver) }

func testObserver(t *testing.T, dsn string) {
	ctx := context.Background()
	db := open(t, dsn)
	var mu sync.Mutex
	seen := map[string]int{}
	var failed error
	db.SetObserver(func(op string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		seen[op]++
		if err != nil {
			failed = err
		}
	})
	if _, err := db.ListSandboxes(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteSandbox(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.db.ExecContext(ctx, `SELECT * FROM no_such_table`); err == nil {
		t.Fatal("no error from a missing table")
	}
	db.SetObserver(nil)
	if _, err := db.ListSandboxes(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["query"] != 1 || seen["exec"] != 2 || failed == nil || errors.Is(failed, context.Canceled) {
		t.Fatalf("observed %v, error %v", seen, failed)
	}
}
