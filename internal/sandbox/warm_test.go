package sandbox

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/store"
)

// fakeStarts stands in for the Manager's start, discard and usage of pooled
// sandboxes: each start blocks until the test lets it go (when gate is
// set), and it records how many ran at once.
type fakeStarts struct {
	mu          sync.Mutex
	n, inFlight int
	most        int
	discarded   int
	bytes       int64
	gate        chan struct{}
}

func (f *fakeStarts) start(ctx context.Context) (*store.Sandbox, []byte, error) {
	f.mu.Lock()
	f.n++
	id := fmt.Sprintf("pooled%d", f.n)
	f.inFlight++
	f.most = max(f.most, f.inFlight)
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	f.inFlight--
	f.mu.Unlock()
	return &store.Sandbox{ID: id}, nil, nil
}

func (f *fakeStarts) discard(*store.Sandbox) {
	f.mu.Lock()
	f.discarded++
	f.mu.Unlock()
}

func (f *fakeStarts) usage(context.Context, *store.Sandbox) (int64, bool) {
	return f.bytes, f.bytes > 0
}

func (f *fakeStarts) pool(cfg WarmPoolConfig) *warmPool {
	return newWarmPool(cfg, f.start, f.discard, f.usage, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// await waits until cond holds (checked under the pool's lock), failing
// the test after a few seconds.
func await(t *testing.T, w *warmPool, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWarmPoolRefillsInParallel: the pool starts Parallel sandboxes at once,
// never more, and fills to its size.
func TestWarmPoolRefillsInParallel(t *testing.T) {
	f := &fakeStarts{gate: make(chan struct{})}
	w := f.pool(WarmPoolConfig{Min: 10, Parallel: 4})
	w.run()
	defer w.close()
	await(t, w, "four starts in flight", func() bool { return w.starting == 4 })
	close(f.gate)
	await(t, w, "a full pool", func() bool { return len(w.ready) == 10 && w.starting == 0 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.most != 4 || f.n != 10 {
		t.Errorf("starts: %d, at most %d at once; want 10, 4 at once", f.n, f.most)
	}
}

// TestWarmPoolMemoryBudget: the pool holds no more sandboxes than their
// measured memory fits in the budget, whatever its size.
func TestWarmPoolMemoryBudget(t *testing.T) {
	f := &fakeStarts{bytes: 100 << 20}
	w := f.pool(WarmPoolConfig{Min: 10, MemoryMB: 250, Parallel: 1})
	w.run()
	defer w.close()
	await(t, w, "two pooled sandboxes", func() bool { return len(w.ready) == 2 })
	// Woken, the filler starts nothing more: the budget is spent.
	w.wake()
	w.filling.Lock() // no start in flight
	w.filling.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ready) != 2 || w.fits() {
		t.Errorf("pool of %d sandboxes of 100 MiB under a 250 MiB budget (fits another: %v)", len(w.ready), w.fits())
	}
}

// TestWarmPoolFollowsDemand: creates within one window raise the pool's
// target up to Max; once the demand is older than demandMemory the pool
// shrinks back to Min, discarding what it no longer needs.
func TestWarmPoolFollowsDemand(t *testing.T) {
	f := &fakeStarts{}
	var mu sync.Mutex
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	w := f.pool(WarmPoolConfig{Min: 2, Max: 6, Parallel: 2})
	w.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	w.run()
	defer w.close()
	await(t, w, "the pool at Min", func() bool { return len(w.ready) == 2 })
	for range 9 { // more than Max: the target stops at Max
		w.pop()
	}
	await(t, w, "the pool at Max", func() bool { return len(w.ready) == 6 && w.starting == 0 })
	if got := func() int { w.mu.Lock(); defer w.mu.Unlock(); return w.target() }(); got != 6 {
		t.Fatalf("target after a burst of 9 = %d, want Max 6", got)
	}
	mu.Lock()
	now = now.Add(demandMemory + demandWindow)
	mu.Unlock()
	w.wake()
	await(t, w, "the pool back at Min", func() bool { return len(w.ready) == 2 })
	f.mu.Lock()
	defer f.mu.Unlock()
	// 2 taken by pops, 4 discarded as surplus.
	if f.discarded != 4 {
		t.Errorf("discarded %d pooled sandboxes when demand fell, want 4", f.discarded)
	}
}

// TestWarmPoolRefillsOneAtATimeDuringTakes: while creates take pooled
// sandboxes only one filler starts sandboxes; once the takes have been
// quiet for refillQuiet, all of them do.
func TestWarmPoolRefillsOneAtATimeDuringTakes(t *testing.T) {
	f := &fakeStarts{}
	var mu sync.Mutex
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	w := f.pool(WarmPoolConfig{Min: 8, Parallel: 4})
	w.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	w.run()
	defer w.close()
	await(t, w, "a full pool", func() bool { return len(w.ready) == 8 && w.starting == 0 })
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
	for range 8 {
		if _, ok := w.pop(); !ok {
			t.Fatal("a full pool handed out nothing")
		}
	}
	await(t, w, "one start in flight", func() bool { return w.starting == 1 })
	// With the clock stopped, the takes stay recent: woken again and
	// again, the other fillers start nothing.
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); {
		w.wake()
		w.mu.Lock()
		n := w.starting
		w.mu.Unlock()
		if n != 1 {
			t.Fatalf("%d starts in flight while creates take sandboxes, want 1", n)
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	now = now.Add(refillQuiet)
	mu.Unlock()
	w.wake()
	await(t, w, "four starts in flight once the takes are quiet", func() bool { return w.starting == 4 })
	close(f.gate)
	await(t, w, "a full pool again", func() bool { return len(w.ready) == 8 && w.starting == 0 })
}
