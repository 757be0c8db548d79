package store

import (
	"sync/atomic"
	"time"
)

// Observer is told of each database statement: its kind ("exec", "query"
// or "begin"), how long it took (for a query, until its first rows), and
// its error. It is called from many goroutines at once and must not block.
type Observer func(op string, d time.Duration, err error)

// observers holds the database's Observer, set after Open. Its zero value
// observes nothing.
type observers struct{ f atomic.Pointer[Observer] }

func (o *observers) observe(op string, start time.Time, err error) {
	if f := o.f.Load(); f != nil && *f != nil {
		(*f)(op, time.Since(start), err)
	}
}

// SetObserver has o told of every statement on the database from now on,
// through this view or any other of it (nil: none).
func (s *DB) SetObserver(o Observer) { s.db.obs.f.Store(&o) }
