package agent

import (
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sbxdev/sbx/gen/filesystem"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// watcherBufferLimit is how many events a watcher (CreateWatcher) keeps
// between two GetWatcherEvents calls; beyond it the oldest are dropped, so
// a watcher nobody polls holds bounded memory.
const watcherBufferLimit = 10_000

func (s filesystemService) openWatch(u *account, path string, recursive, includeEntry, allowNetwork bool) (*watch, error) {
	return openWatch(watchOptions{
		path:              path,
		recursive:         recursive,
		includeEntry:      includeEntry,
		allowNetworkMount: allowNetwork,
	}, u, s.a.log.With("watch", path))
}

// WatchDir streams the directory's events. The start event is sent once
// the watch is in place (the SDK's watchDir waits for it), so a change made
// after watchDir returns is always reported. The stream ends when the
// client goes away or the directory is removed.
func (s filesystemService) WatchDir(ctx context.Context, req *connect.Request[pb.WatchDirRequest], stream *connect.ServerStream[pb.WatchDirResponse]) error {
	u, path, err := s.target(req.Header(), req.Msg.GetPath())
	if err != nil {
		return err
	}
	m := req.Msg
	w, err := s.openWatch(u, path, m.GetRecursive(), m.GetIncludeEntry(), m.GetAllowNetworkMounts())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer w.stop()
	defer cancel() // first: unblocks emit
	events := make(chan *pb.FilesystemEvent, 64)
	go func() {
		defer close(events)
		w.run(func(ev *pb.FilesystemEvent) bool {
			select {
			case events <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	s.a.log.Debug("watch started", "path", path, "recursive", m.GetRecursive(), "user", u.name)

	if err := stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Start{Start: &pb.WatchDirResponse_StartEvent{}}}); err != nil {
		return err
	}
	var tick <-chan time.Time
	if every := keepalive(req.Header().Get(KeepalivePingHeader)); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil // the directory was removed
			}
			if err := stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Filesystem{Filesystem: ev}}); err != nil {
				return err
			}
		case <-tick:
			if err := stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Keepalive{Keepalive: &pb.WatchDirResponse_KeepAlive{}}}); err != nil {
				return err
			}
		case <-ctx.Done():
			return connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
}

func (s filesystemService) CreateWatcher(ctx context.Context, req *connect.Request[pb.CreateWatcherRequest]) (*connect.Response[pb.CreateWatcherResponse], error) {
	u, path, err := s.target(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	m := req.Msg
	w, err := s.openWatch(u, path, m.GetRecursive(), m.GetIncludeEntry(), m.GetAllowNetworkMounts())
	if err != nil {
		return nil, err
	}
	id := s.a.watchers().add(w, s.a.log)
	s.a.log.Debug("watcher created", "watcher_id", id, "path", path, "recursive", m.GetRecursive(), "user", u.name)
	return connect.NewResponse(&pb.CreateWatcherResponse{WatcherId: id}), nil
}

func (s filesystemService) GetWatcherEvents(ctx context.Context, req *connect.Request[pb.GetWatcherEventsRequest]) (*connect.Response[pb.GetWatcherEventsResponse], error) {
	bw, err := s.a.watchers().get(req.Msg.GetWatcherId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.GetWatcherEventsResponse{Events: bw.take()}), nil
}

func (s filesystemService) RemoveWatcher(ctx context.Context, req *connect.Request[pb.RemoveWatcherRequest]) (*connect.Response[pb.RemoveWatcherResponse], error) {
	if err := s.a.watchers().remove(req.Msg.GetWatcherId()); err != nil {
		return nil, err
	}
	s.a.log.Debug("watcher removed", "watcher_id", req.Msg.GetWatcherId())
	return connect.NewResponse(&pb.RemoveWatcherResponse{}), nil
}

// watcherTable holds the watchers made by CreateWatcher, by id.
type watcherTable struct {
	mu sync.Mutex
	m  map[string]*bufferedWatch
}

func (a *Agent) watchers() *watcherTable { return a.watches }

// closeAll stops every watcher (the agent is closing).
func (t *watcherTable) closeAll() {
	t.mu.Lock()
	ws := t.m
	t.m = map[string]*bufferedWatch{}
	t.mu.Unlock()
	for _, bw := range ws {
		bw.w.stop()
	}
}

// add starts w, buffering its events, and returns the new watcher's id.
func (t *watcherTable) add(w *watch, log *slog.Logger) string {
	id := rand.Text() // unguessable, though the access token already guards it
	bw := &bufferedWatch{w: w, log: log.With("watcher_id", id), pushed: make(chan struct{})}
	t.mu.Lock()
	t.m[id] = bw
	t.mu.Unlock()
	go w.run(bw.push)
	return id
}

func (t *watcherTable) get(id string) (*bufferedWatch, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	bw, ok := t.m[id]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, "watcher %q not found", id)
	}
	return bw, nil
}

// remove stops the watcher and forgets it.
func (t *watcherTable) remove(id string) error {
	t.mu.Lock()
	bw, ok := t.m[id]
	delete(t.m, id)
	t.mu.Unlock()
	if !ok {
		return errdefs.New(errdefs.ErrNotFound, "watcher %q not found", id)
	}
	bw.w.stop()
	return nil
}

// bufferedWatch keeps a watch's events until they are taken.
type bufferedWatch struct {
	w   *watch
	log *slog.Logger

	mu      sync.Mutex
	events  []*pb.FilesystemEvent
	dropped int           // since the last take
	pushed  chan struct{} // closed and replaced on each push, for tests to wait on
}

func (b *bufferedWatch) push(ev *pb.FilesystemEvent) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.events) >= watcherBufferLimit {
		if b.dropped == 0 {
			b.log.Warn("watcher buffer full: dropping the oldest events until they are read", "limit", watcherBufferLimit)
		}
		b.events[0] = nil
		b.events = b.events[1:]
		b.dropped++
	}
	b.events = append(b.events, ev)
	close(b.pushed)
	b.pushed = make(chan struct{})
	return true
}

// take returns the buffered events and empties the buffer.
func (b *bufferedWatch) take() []*pb.FilesystemEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs := b.events
	b.events = nil
	if b.dropped > 0 {
		b.log.Warn("watcher events were dropped", "dropped", b.dropped)
		b.dropped = 0
	}
	return evs
}
