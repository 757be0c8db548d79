package store

import (
	"context"
	"math"
	"testing"
	"time"
)

func TestUsage(t *testing.T) { eachEngine(t, testUsage) }

// testUsage adds samples of two sandboxes over two days and reads them
// back summed, by sandbox and by day, within ranges and per team; the
// mark is the newest sample's.
func testUsage(t *testing.T, dsn string) {
	ctx := context.Background()
	db := open(t, dsn)
	day1 := time.Date(2026, 12, 6, 23, 59, 59, 0, time.UTC)
	day2 := day1.Add(2 * time.Second)
	u := func(secs float64) Usage {
		d := time.Duration(secs * float64(time.Second))
		return Usage{Run: d, VCPUSeconds: secs * 2, CPUUsed: d / 2, MemGiBSeconds: secs, MemUsedGiBSeconds: secs / 4, DiskGiBHours: secs / 3600, EgressBytes: int64(secs * 100), PausedGiBHours: secs / 10}
	}
	if _, ok, err := db.LastUsageMark(ctx, "a"); ok || err != nil {
		t.Fatalf("mark of nothing: %v, %v", ok, err)
	}
	for _, ds := range [][]UsageDelta{
		{{SandboxID: "a", TeamID: "t1", Time: day1, Usage: u(10), CPUMark: 5}, {SandboxID: "b", TeamID: "t2", Time: day1, Usage: u(1), CPUMark: 1}},
		{{SandboxID: "a", TeamID: "t1", Time: day2, Usage: u(2), CPUMark: 6}},
		{{SandboxID: "a", TeamID: "t1", Time: day2.Add(time.Second), Usage: u(1), CPUMark: 7, EgressMark: 900}},
	} {
		if err := db.AddUsage(ctx, ds); err != nil {
			t.Fatal(err)
		}
	}
	if m, ok, err := db.LastUsageMark(ctx, "a"); !ok || err != nil || !m.Time.Equal(day2.Add(time.Second)) || m.CPUMark != 7 || m.EgressMark != 900 {
		t.Fatalf("mark of a: %+v, %v, %v", m, ok, err)
	}
	all, err := db.UsageBy(ctx, UsageFilter{}, "")
	if err != nil || len(all) != 1 || !near(all[0].Usage, u(14)) {
		t.Fatalf("all: %+v, %v (want %+v)", all, err, u(14))
	}
	bySandbox, err := db.UsageBy(ctx, UsageFilter{}, "sandbox")
	if err != nil || len(bySandbox) != 2 || bySandbox[0].SandboxID != "a" || !near(bySandbox[0].Usage, u(13)) || !near(bySandbox[1].Usage, u(1)) {
		t.Fatalf("by sandbox: %+v, %v", bySandbox, err)
	}
	byDay, err := db.UsageBy(ctx, UsageFilter{TeamID: "t1"}, "day")
	if err != nil || len(byDay) != 2 || !byDay[0].Day.Equal(UsageDay(day1)) || !near(byDay[0].Usage, u(10)) ||
		!byDay[1].Day.Equal(UsageDay(day2)) || !near(byDay[1].Usage, u(3)) {
		t.Fatalf("by day: %+v, %v", byDay, err)
	}
	// A range selects the days it overlaps, whole.
	second, err := db.UsageBy(ctx, UsageFilter{Since: day2.Add(time.Hour)}, "")
	if err != nil || len(second) != 1 || !near(second[0].Usage, u(3)) {
		t.Fatalf("since day 2: %+v, %v", second, err)
	}
	first, err := db.UsageBy(ctx, UsageFilter{TeamID: "t2", Until: day1}, "sandbox")
	if err != nil || len(first) != 1 || first[0].SandboxID != "b" {
		t.Fatalf("t2 until day 1: %+v, %v", first, err)
	}
	if none, err := db.UsageBy(ctx, UsageFilter{TeamID: "t3"}, "sandbox"); err != nil || len(none) != 0 {
		t.Fatalf("t3: %+v, %v", none, err)
	}
}

// near reports whether a and b are equal but for float rounding.
func near(a, b Usage) bool {
	f := func(x, y float64) bool { return math.Abs(x-y) < 1e-9 }
	return a.Run == b.Run && a.CPUUsed == b.CPUUsed && a.EgressBytes == b.EgressBytes && f(a.VCPUSeconds, b.VCPUSeconds) && f(a.MemGiBSeconds, b.MemGiBSeconds) &&
		f(a.MemUsedGiBSeconds, b.MemUsedGiBSeconds) && f(a.DiskGiBHours, b.DiskGiBHours) && f(a.PausedGiBHours, b.PausedGiBHours)
}
