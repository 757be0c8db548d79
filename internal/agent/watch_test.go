package agent

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sbxdev/sbx/gen/filesystem"
	"github.com/sbxdev/sbx/gen/filesystem/filesystemconnect"
)

// watchStream reads a WatchDir stream.
type watchStream struct {
	t    testing.TB
	s    *connect.ServerStreamForClient[pb.WatchDirResponse]
	seen []string // "TYPE name" of every event read
}

// startWatch starts a watch and waits for its start event: from then on
// every change is reported.
func startWatch(t testing.TB, c filesystemconnect.FilesystemClient, req *pb.WatchDirRequest, user string) *watchStream {
	t.Helper()
	s, err := c.WatchDir(testContext(t), fsReq(req, user))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !s.Receive() {
		t.Fatalf("no start event: %v", s.Err())
	}
	if s.Msg().GetStart() == nil {
		t.Fatalf("first message %v, want the start event", s.Msg())
	}
	return &watchStream{t: t, s: s}
}

// watchErr returns the error a watch fails with before its start event.
func watchErr(t testing.TB, c filesystemconnect.FilesystemClient, req *pb.WatchDirRequest, user string) error {
	t.Helper()
	s, err := c.WatchDir(testContext(t), fsReq(req, user))
	if err != nil {
		return err
	}
	defer s.Close()
	if s.Receive() {
		t.Fatalf("watch of %s started: %v", req.GetPath(), s.Msg())
	}
	return s.Err()
}

// next returns the next filesystem event, or nil at the end of the stream.
func (w *watchStream) next() *pb.FilesystemEvent {
	w.t.Helper()
	for w.s.Receive() {
		if ev := w.s.Msg().GetFilesystem(); ev != nil {
			w.seen = append(w.seen, evString(ev))
			return ev
		}
	}
	if err := w.s.Err(); err != nil {
		w.t.Fatalf("watch stream: %v (events so far: %q)", err, w.seen)
	}
	return nil
}

// waitFor reads events until one is typ on name, and returns it.
func (w *watchStream) waitFor(typ pb.EventType, name string) *pb.FilesystemEvent {
	w.t.Helper()
	for {
		ev := w.next()
		if ev == nil {
			w.t.Fatalf("stream ended before %v %s (events: %q)", typ, name, w.seen)
		}
		if ev.GetType() == typ && ev.GetName() == name {
			return ev
		}
	}
}

func evString(ev *pb.FilesystemEvent) string {
	return strings.TrimPrefix(ev.GetType().String(), "EVENT_TYPE_") + " " + ev.GetName()
}

func TestWatchDirRecursive(t *testing.T) {
	dir := fsTempDir(t)
	fsTree(t, dir, "old/")
	c := fsClient(t, "h2c")
	w := startWatch(t, c, &pb.WatchDirRequest{Path: dir, Recursive: true}, "")
	const (
		create = pb.EventType_EVENT_TYPE_CREATE
		write  = pb.EventType_EVENT_TYPE_WRITE
		remove = pb.EventType_EVENT_TYPE_REMOVE
		rename = pb.EventType_EVENT_TYPE_RENAME
		chmod  = pb.EventType_EVENT_TYPE_CHMOD
	)

	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	w.waitFor(create, "sub") // reported once sub is watched too
	f := filepath.Join(dir, "sub", "f.txt")
	must(t, os.WriteFile(f, []byte("x"), 0o644))
	w.waitFor(create, "sub/f.txt")
	w.waitFor(write, "sub/f.txt")
	must(t, os.Chmod(f, 0o600))
	w.waitFor(chmod, "sub/f.txt")
	must(t, os.Rename(f, filepath.Join(dir, "sub", "g.txt")))
	w.waitFor(rename, "sub/f.txt")
	w.waitFor(create, "sub/g.txt")
	must(t, os.Remove(filepath.Join(dir, "sub", "g.txt")))
	w.waitFor(remove, "sub/g.txt")

	// A directory that was there before the watch is watched.
	must(t, os.WriteFile(filepath.Join(dir, "old", "x"), nil, 0o644))
	w.waitFor(create, "old/x")

	// A tree made at once: what was made before the new directories'
	// watches took hold is reported too.
	fsTree(t, dir, "deep/a/b/f")
	w.waitFor(create, "deep/a/b/f")

	// A directory moved within the tree is followed under its new name.
	must(t, os.Rename(filepath.Join(dir, "sub"), filepath.Join(dir, "moved")))
	w.waitFor(rename, "sub")
	w.waitFor(create, "moved")
	must(t, os.WriteFile(filepath.Join(dir, "moved", "h"), nil, 0o644))
	w.waitFor(create, "moved/h")

	// The stream ends when the directory itself goes.
	must(t, os.RemoveAll(dir))
	w.waitFor(remove, "moved/h")
	for w.next() != nil {
	}
}

func TestWatchDirFlat(t *testing.T) {
	dir := fsTempDir(t)
	c := fsClient(t, "http1")
	w := startWatch(t, c, &pb.WatchDirRequest{Path: dir, IncludeEntry: true}, "")

	fsTree(t, dir, "sub/x")
	must(t, os.WriteFile(filepath.Join(dir, "top.txt"), []byte("x"), 0o644))
	ev := w.waitFor(pb.EventType_EVENT_TYPE_CREATE, "top.txt")
	for _, s := range w.seen {
		if strings.Contains(s, "sub/") {
			t.Errorf("event %q from a subdirectory of a flat watch", s)
		}
	}
	if e := ev.GetEntry(); e.GetPath() != filepath.Join(dir, "top.txt") || e.GetType() != pb.FileType_FILE_TYPE_FILE || e.GetOwner() != "root" {
		t.Errorf("entry %v", e)
	}
	must(t, os.Remove(filepath.Join(dir, "top.txt")))
	if ev := w.waitFor(pb.EventType_EVENT_TYPE_REMOVE, "top.txt"); ev.Entry != nil {
		t.Errorf("remove event with an entry: %v", ev.Entry)
	}
}

func TestWatchDirErrors(t *testing.T) {
	dir := fsTempDir(t)
	fsTree(t, dir, "file")
	c := fsClient(t, "h2c")
	wantCode(t, watchErr(t, c, &pb.WatchDirRequest{Path: filepath.Join(dir, "missing")}, ""), connect.CodeNotFound)
	wantCode(t, watchErr(t, c, &pb.WatchDirRequest{Path: filepath.Join(dir, "file")}, ""), connect.CodeInvalidArgument)
	wantCode(t, watchErr(t, c, &pb.WatchDirRequest{Path: ""}, ""), connect.CodeInvalidArgument)
}

// TestWatchDirKeepalive asks for keepalives every second and waits for one.
func TestWatchDirKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skip("waits a second")
	}
	dir := fsTempDir(t)
	c := fsClient(t, "h2c")
	r := fsReq(&pb.WatchDirRequest{Path: dir}, "")
	r.Header().Set(KeepalivePingHeader, "1")
	s, err := c.WatchDir(testContext(t), r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 2; i++ {
		if !s.Receive() {
			t.Fatal(s.Err())
		}
	}
	if s.Msg().GetKeepalive() == nil {
		t.Errorf("second message %v, want a keepalive", s.Msg())
	}
}

// TestWatchDirClientGone checks that a watch ends, inotify instance and
// all, when its client goes away.
func TestWatchDirClientGone(t *testing.T) {
	dir := fsTempDir(t)
	c := fsClient(t, "h2c")
	w := startWatch(t, c, &pb.WatchDirRequest{Path: dir, Recursive: true}, "nobody")
	// Instances watching this test's own directory: a count of all of them
	// would see earlier tests' watches still closing.
	if n := inotifyWatching(t, dir); n != 1 {
		t.Fatalf("%d inotify instances watch %s during the watch, want 1", n, dir)
	}
	w.s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for inotifyWatching(t, dir) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the watch's inotify instance outlived its client")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition: there is no event to wait on
	}
}

// inotifyWatching counts this process's inotify instances that watch dir
// (their /proc/self/fdinfo lists the inode of every watched directory).
func inotifyWatching(t testing.TB, dir string) int {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(" ino:%x ", st.Ino)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); l != "anon_inode:inotify" {
			continue
		}
		info, _ := os.ReadFile(filepath.Join("/proc/self/fdinfo", fd.Name()))
		if strings.Contains(string(info), want) {
			n++
		}
	}
	return n
}

// inotifyCount counts this process's inotify instances.
func inotifyCount(t testing.TB) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

func TestWatcher(t *testing.T) {
	dir := fsTempDir(t)
	c := fsClient(t, "h2c")
	ctx := testContext(t)
	res, err := c.CreateWatcher(ctx, fsReq(&pb.CreateWatcherRequest{Path: dir, Recursive: true}, ""))
	if err != nil {
		t.Fatal(err)
	}
	id := res.Msg.GetWatcherId()
	bw, err := testAgent.a.watchers().get(id)
	if err != nil {
		t.Fatal(err)
	}

	fsTree(t, dir, "sub/f")
	waitBuffered(t, bw, "CREATE sub/f")
	got, err := c.GetWatcherEvents(ctx, fsReq(&pb.GetWatcherEventsRequest{WatcherId: id}, ""))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, ev := range got.Msg.GetEvents() {
		seen = append(seen, evString(ev))
	}
	if !slices.Contains(seen, "CREATE sub") || !slices.Contains(seen, "CREATE sub/f") {
		t.Errorf("events %q, want CREATE sub and CREATE sub/f", seen)
	}
	must(t, os.Remove(filepath.Join(dir, "sub", "f")))
	waitBuffered(t, bw, "REMOVE sub/f")
	got, err = c.GetWatcherEvents(ctx, fsReq(&pb.GetWatcherEventsRequest{WatcherId: id}, ""))
	if err != nil {
		t.Fatal(err)
	}
	seen = seen[:0]
	for _, ev := range got.Msg.GetEvents() {
		seen = append(seen, evString(ev))
	}
	if len(seen) == 0 || seen[len(seen)-1] != "REMOVE sub/f" || slices.Contains(seen, "CREATE sub/f") {
		t.Errorf("second batch %q: events were not taken exactly once", seen)
	}

	before := inotifyCount(t)
	if _, err := c.RemoveWatcher(ctx, fsReq(&pb.RemoveWatcherRequest{WatcherId: id}, "")); err != nil {
		t.Fatal(err)
	}
	if n := inotifyCount(t); n != before-1 {
		t.Errorf("%d inotify instances after RemoveWatcher, want %d", n, before-1)
	}
	_, err = c.GetWatcherEvents(ctx, fsReq(&pb.GetWatcherEventsRequest{WatcherId: id}, ""))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.RemoveWatcher(ctx, fsReq(&pb.RemoveWatcherRequest{WatcherId: id}, ""))
	wantCode(t, err, connect.CodeNotFound)

	fsTree(t, dir, "file")
	_, err = c.CreateWatcher(ctx, fsReq(&pb.CreateWatcherRequest{Path: filepath.Join(dir, "missing")}, ""))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.CreateWatcher(ctx, fsReq(&pb.CreateWatcherRequest{Path: filepath.Join(dir, "file")}, ""))
	wantCode(t, err, connect.CodeInvalidArgument)
}

// waitBuffered waits until bw holds an event "TYPE name".
func waitBuffered(t testing.TB, bw *bufferedWatch, want string) {
	t.Helper()
	ctx := testContext(t)
	for {
		bw.mu.Lock()
		found := slices.ContainsFunc(bw.events, func(ev *pb.FilesystemEvent) bool { return evString(ev) == want })
		ch := bw.pushed
		bw.mu.Unlock()
		if found {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("no %s event", want)
		}
	}
}

func TestWatcherBufferBounded(t *testing.T) {
	bw := &bufferedWatch{log: slog.New(slog.NewTextHandler(io.Discard, nil)), pushed: make(chan struct{})}
	for i := range watcherBufferLimit + 5 {
		bw.push(&pb.FilesystemEvent{Name: fmt.Sprint(i)})
	}
	evs := bw.take()
	if len(evs) != watcherBufferLimit || evs[0].GetName() != "5" || evs[len(evs)-1].GetName() != fmt.Sprint(watcherBufferLimit+4) {
		t.Errorf("kept %d events from %s to %s, want the newest %d", len(evs), evs[0].GetName(), evs[len(evs)-1].GetName(), watcherBufferLimit)
	}
	if bw.dropped != 0 || len(bw.take()) != 0 {
		t.Error("take did not empty the buffer")
	}
}
