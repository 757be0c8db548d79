package dashboard

import (
	"sync"

	"github.com/sbxdev/sbx/internal/store"
)

// subscriberBuffer is how many changes a stream may fall behind by before
// it is sent a fresh snapshot instead.
const subscriberBuffer = 256

// Hub fans the Manager's lifecycle events out to the dashboard's sandbox
// streams: it is one of the Manager's event sinks (sandbox.EventSink).
// Each node's Manager tells it of that node's sandboxes only. Its methods
// may be called from many goroutines at once.
type Hub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

// NewHub returns a Hub with no subscribers.
func NewHub() *Hub { return &Hub{subs: map[*subscriber]struct{}{}} }

// subscriber is one stream's queue of changed sandboxes of its team.
type subscriber struct {
	team string
	ch   chan string // sandbox ids
	// lost is signalled when a change did not fit in ch: the stream
	// sends a snapshot.
	lost chan struct{}
}

// Stored tells the streams of ev's team that its sandbox changed. It
// never blocks (the Manager calls it holding the sandbox's lock).
func (h *Hub) Stored(ev *store.Event) {
	if ev == nil {
		return
	}
	team := store.TeamOrDefault(ev.TeamID)
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.team != team {
			continue
		}
		select {
		case s.ch <- ev.SandboxID:
		default:
			select {
			case s.lost <- struct{}{}:
			default:
			}
		}
	}
}

// subscribe returns a new subscriber to team's changes and the function
// that ends it.
func (h *Hub) subscribe(team string) (*subscriber, func()) {
	s := &subscriber{team: store.TeamOrDefault(team), ch: make(chan string, subscriberBuffer), lost: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s, func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}
}

// Sinks is an EventSink that tells each of its sinks.
type Sinks []interface{ Stored(*store.Event) }

// Stored tells each sink of ev.
func (s Sinks) Stored(ev *store.Event) {
	for _, k := range s {
		k.Stored(ev)
	}
}
