package api

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(RateLimit{Rate: 2, Burst: 3}, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.take("a"); !ok {
			t.Fatalf("call %d of the burst refused", i)
		}
	}
	ok, wait := l.take("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: ok=%v wait=%s, want refused and 500ms", ok, wait)
	}
	// Another key has its own bucket.
	if ok, _ := l.take("b"); !ok {
		t.Fatal("key b refused by key a's use")
	}
	now = now.Add(250 * time.Millisecond)
	if ok, wait := l.take("a"); ok || wait != 250*time.Millisecond {
		t.Fatalf("half a token: ok=%v wait=%s, want refused and 250ms", ok, wait)
	}
	now = now.Add(250 * time.Millisecond)
	if ok, _ := l.take("a"); !ok {
		t.Fatal("a refilled token refused")
	}
	// A long idle refills to the burst, no more.
	now = now.Add(time.Hour)
	for i := range 3 {
		if ok, _ := l.take("a"); !ok {
			t.Fatalf("after idling, call %d refused", i)
		}
	}
	if ok, _ := l.take("a"); ok {
		t.Fatal("the bucket held more than its burst")
	}
	// A zero rate disables the limit.
	if l := newLimiter(RateLimit{}, nil); l != nil {
		t.Fatal("a zero rate made a limiter")
	}
	var none *limiter
	if ok, _ := none.take("a"); !ok {
		t.Fatal("a nil limiter refused")
	}
}
