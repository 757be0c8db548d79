package agent

import (
	"sync"

	pb "github.com/sbxdev/sbx/gen/process"
)

// fanout delivers a process's events to every subscriber, in one order, from
// the moment each subscribed. A subscriber that does not keep up slows the
// publisher down (and so the process, through its full output pipe); a
// subscriber that leaves is dropped at once and never blocks anyone.
type fanout struct {
	// pub serialises publishers (the stdout and stderr readers), so every
	// subscriber sees the same order. It is held while delivering.
	pub sync.Mutex

	// mu guards subs, end. It is never held while delivering, so subscribing
	// and leaving are not slowed down by a stalled subscriber.
	mu   sync.Mutex
	subs map[*subscriber]struct{}
	end  *pb.ProcessEvent // set once the process has ended
}

// subscriber is one follower of a process's events. Its channel is closed
// after the end event.
type subscriber struct {
	events chan *pb.ProcessEvent
	gone   chan struct{}
	once   sync.Once
}

func newFanout() *fanout {
	return &fanout{subs: make(map[*subscriber]struct{})}
}

// subscribe adds a subscriber. If the process has already ended it returns
// nil and the end event instead.
func (f *fanout) subscribe() (*subscriber, *pb.ProcessEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.end != nil {
		return nil, f.end
	}
	s := &subscriber{events: make(chan *pb.ProcessEvent, 64), gone: make(chan struct{})}
	f.subs[s] = struct{}{}
	return s, nil
}

// leave drops s; a publisher blocked on s is released at once.
func (f *fanout) leave(s *subscriber) {
	s.once.Do(func() { close(s.gone) })
	f.mu.Lock()
	delete(f.subs, s)
	f.mu.Unlock()
}

func (f *fanout) snapshot() []*subscriber {
	f.mu.Lock()
	defer f.mu.Unlock()
	subs := make([]*subscriber, 0, len(f.subs))
	for s := range f.subs {
		subs = append(subs, s)
	}
	return subs
}

// publish delivers ev to everyone subscribed now, waiting for slow ones.
func (f *fanout) publish(ev *pb.ProcessEvent) {
	f.pub.Lock()
	defer f.pub.Unlock()
	f.deliver(ev, f.snapshot())
}

func (f *fanout) deliver(ev *pb.ProcessEvent, subs []*subscriber) {
	for _, s := range subs {
		select {
		case s.events <- ev:
		case <-s.gone:
		}
	}
}

// finish publishes the end event as the last one and closes every
// subscriber's channel; later subscribers get the end event at once.
func (f *fanout) finish(end *pb.ProcessEvent) {
	f.pub.Lock()
	defer f.pub.Unlock()
	f.mu.Lock()
	f.end = end
	subs := make([]*subscriber, 0, len(f.subs))
	for s := range f.subs {
		subs = append(subs, s)
	}
	clear(f.subs)
	f.mu.Unlock()
	f.deliver(end, subs)
	for _, s := range subs {
		close(s.events)
	}
}
