package sandbox

import (
	"sync"
	"time"
)

// timers holds the two clocks of running sandboxes: the end of life (a
// timeout) and the idle pause. It moves no sandbox itself: when a clock
// runs out it calls onEnd or onIdle, which go through the Manager's
// transition like every other caller. It is safe for concurrent use.
type timers struct {
	onEnd  func(id string)
	onIdle func(id string, idle time.Duration)
	// activity reports a sandbox's last data-plane request and how many
	// it has open.
	activity func(id string) (last time.Time, open int)

	mu     sync.Mutex
	end    map[string]*time.Timer
	idle   map[string]*time.Timer
	closed bool
}

func newTimers(onEnd func(id string), onIdle func(id string, idle time.Duration), activity func(id string) (time.Time, int)) *timers {
	return &timers{
		onEnd: onEnd, onIdle: onIdle, activity: activity,
		end:  map[string]*time.Timer{},
		idle: map[string]*time.Timer{},
	}
}

// schedule arms (a zero end: disarms) sandbox id's end-of-life timer.
func (t *timers) schedule(id string, end time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.end[id]; ok {
		old.Stop()
		delete(t.end, id)
	}
	if end.IsZero() || t.closed {
		return
	}
	t.end[id] = time.AfterFunc(time.Until(end), func() { t.onEnd(id) })
}

// watchIdle arms sandbox id's idle-pause check when idle is positive.
func (t *timers) watchIdle(id string, idle time.Duration) {
	if idle <= 0 {
		return
	}
	t.armIdle(id, idle, time.Now(), idle)
}

func (t *timers) armIdle(id string, idle time.Duration, since time.Time, after time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.idle[id]; ok {
		old.Stop()
	}
	if t.closed {
		return
	}
	t.idle[id] = time.AfterFunc(after, func() { t.checkIdle(id, idle, since) })
}

// checkIdle calls onIdle for sandbox id if it has had no request open and
// none started for idle (counting from since, when it started or resumed),
// and checks again later otherwise.
func (t *timers) checkIdle(id string, idle time.Duration, since time.Time) {
	last, open := t.activity(id)
	if last.Before(since) {
		last = since
	}
	if open > 0 {
		t.armIdle(id, idle, since, idle)
		return
	}
	if left := idle - time.Since(last); left > 0 {
		t.armIdle(id, idle, since, left)
		return
	}
	t.onIdle(id, idle)
}

// stop disarms both of sandbox id's timers.
func (t *timers) stop(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range []map[string]*time.Timer{t.end, t.idle} {
		if old, ok := m[id]; ok {
			old.Stop()
			delete(m, id)
		}
	}
}

// close disarms every timer; none is armed after.
func (t *timers) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, m := range []map[string]*time.Timer{t.end, t.idle} {
		for id, old := range m {
			old.Stop()
			delete(m, id)
		}
	}
}
