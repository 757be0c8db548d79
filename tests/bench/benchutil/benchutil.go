// Package benchutil is what the bench commands (tests/bench and
// tests/bench/lifecycle) share: a testing.TB stand-in that lets the test
// harness run outside `go test`, and the percentile and duration formats of
// their tables.
package benchutil

import (
	"fmt"
	"log"
	"os"
	"sort"
	"sync"
	"time"
)

// T lets the harness run outside `go test`: Fatal and Fatalf run the
// cleanups (the server and its sandboxes, temporary directories) in reverse
// order, then exit.
type T struct {
	mu       sync.Mutex
	cleanups []func()
}

func (t *T) Helper()                           {}
func (t *T) Fatal(args ...any)                 { t.Cleanups(); log.Fatal(args...) }
func (t *T) Fatalf(format string, args ...any) { t.Cleanups(); log.Fatalf(format, args...) }
func (t *T) Errorf(format string, args ...any) { log.Printf(format, args...) }
func (t *T) Logf(format string, args ...any)   { log.Printf(format, args...) }

// Cleanup registers f to run at Cleanups.
func (t *T) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

// TempDir makes a directory removed at Cleanups.
func (t *T) TempDir() string {
	d, err := os.MkdirTemp("", "sbx-bench-")
	if err != nil {
		log.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Cleanups runs the registered cleanups, last first.
func (t *T) Cleanups() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// MS formats d in milliseconds.
func MS(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Pct is the p-th percentile of ds (nearest rank).
func Pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}
