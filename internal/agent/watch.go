package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	pb "github.com/sbxdev/sbx/gen/filesystem"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// watchMask is what every directory watch reports: the events envd maps to
// its event types, and the directory's own removal.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_EXCL_UNLINK | unix.IN_ONLYDIR

// watchOptions are what a WatchDir or CreateWatcher request asks for.
type watchOptions struct {
	path              string // absolute, as resolved from the request
	recursive         bool
	includeEntry      bool
	allowNetworkMount bool
}

// watch is one inotify instance on a directory and, when recursive, on
// every directory below it (directories made later included).
//
// # Lifecycle
//
//  1. [openWatch] checks the directory and adds every watch, with the
//     caller's identity: a user is only told of changes in directories it
//     may read. Events from then on are queued by the kernel.
//  2. [watch.run], started at once in a goroutine of its own, reads and
//     reports them until the watch is stopped, the directory itself is
//     removed, or its consumer wants no more.
//  3. [watch.stop] ends run and frees the inotify instance.
//
// Names in events are relative to the watched directory ("sub/file.txt"),
// as envd sends them. A directory made inside a recursive watch is watched
// before its CREATE event is reported, and what was made in it before its
// watch took hold is reported as CREATE events after it; an entry made just
// as the watch is added may be reported twice.
type watch struct {
	opts  watchOptions
	root  string // the directory, symlinks resolved
	id    *fsIdentity
	names *idNames
	log   *slog.Logger
	f     *os.File
	dirs  map[int]string // watch descriptor → directory relative to root ("." for root); only run touches it after open
	done  chan struct{}  // closed when run returns
}

// openWatch watches o.path as user u. The watch is in place when it returns.
func openWatch(o watchOptions, u *account, log *slog.Logger) (*watch, error) {
	id, err := newFSIdentity(u)
	if err != nil {
		return nil, err
	}
	w := &watch{opts: o, id: id, names: systemUsers.names(), log: log, dirs: map[int]string{}, done: make(chan struct{})}
	if err := w.open(); err != nil {
		if w.f != nil {
			w.f.Close()
		}
		id.close()
		return nil, err
	}
	return w, nil
}

func (w *watch) open() error {
	o := w.opts
	err := w.id.do(func() error {
		root, err := resolveDir(o.path, "watch")
		if err != nil {
			return err
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(root, &sfs); err == nil && !o.allowNetworkMount {
			if kind, ok := networkFS[int64(sfs.Type)]; ok {
				return errdefs.New(errdefs.ErrFailedPrecondition, "%q is on a network filesystem (%s), where changes made elsewhere are not seen; ask with allowNetworkMounts to watch it anyway", o.path, kind)
			}
		}
		w.root = root
		return nil
	})
	if err != nil {
		return err
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			return errdefs.Wrap(errdefs.ErrUnavailable, err, "too many watches in the sandbox")
		}
		return fmt.Errorf("inotify_init1: %w", err)
	}
	// Non-blocking, so reads go through the runtime's poller and close
	// unblocks them.
	w.f = os.NewFile(uintptr(fd), "inotify")
	return w.id.do(func() error {
		if err := w.add("."); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return errdefs.Wrap(errdefs.ErrUnavailable, err, "too many watches in the sandbox")
			}
			return fsError(err, "watch", o.path)
		}
		if o.recursive {
			w.addBelow(".", nil)
		}
		return nil
	})
}

// add watches the directory rel (relative to root). Symlinks are not
// followed below the root.
func (w *watch) add(rel string) error {
	mask := uint32(watchMask)
	if rel != "." {
		mask |= unix.IN_DONT_FOLLOW
	}
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var wd int
	var addErr error
	if err := rc.Control(func(fd uintptr) {
		wd, addErr = unix.InotifyAddWatch(int(fd), filepath.Join(w.root, rel), mask)
	}); err != nil {
		return err
	}
	if addErr != nil {
		return addErr
	}
	w.dirs[wd] = rel
	return nil
}

// addBelow watches every directory below rel, not following symlinks. If
// found is not nil, it receives every entry below rel. Directories that
// cannot be read or watched are left out.
func (w *watch) addBelow(rel string, found *[]string) {
	start := filepath.Join(w.root, rel)
	_ = filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == start {
			return nil // unreadable: its entries stay unknown; SkipDir is implied for a failed read
		}
		r, _ := filepath.Rel(w.root, p)
		if found != nil {
			*found = append(*found, r)
		}
		if !d.IsDir() {
			return nil
		}
		if err := w.add(r); err != nil {
			w.logAddError(p, err)
			return filepath.SkipDir
		}
		return nil
	})
}

// logAddError logs a subdirectory that could not be watched: quietly if it
// is gone or not the user's to read, which is expected.
func (w *watch) logAddError(path string, err error) {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		w.log.Debug("subdirectory not watched", "path", path, "err", err)
		return
	}
	w.log.Warn("subdirectory not watched", "path", path, "err", err)
}

// forget removes the watches on rel and below it: it has been moved away,
// and their names would be wrong. A move within the tree adds them again
// under the new name.
func (w *watch) forget(rel string) {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return
	}
	for wd, dir := range w.dirs {
		if dir == rel || strings.HasPrefix(dir, rel+"/") {
			delete(w.dirs, wd)
			_ = rc.Control(func(fd uintptr) { _, _ = unix.InotifyRmWatch(int(fd), uint32(wd)) })
		}
	}
}

// run reports events through emit until the watch is stopped, the watched
// directory is removed, or emit returns false. It must be called once,
// after openWatch succeeds.
func (w *watch) run(emit func(*pb.FilesystemEvent) bool) {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.log.Warn("read inotify events", "path", w.opts.path, "err", err)
			}
			return
		}
		if !w.handle(buf[:n], emit) {
			return
		}
	}
}

// handle reports the events in one read. It returns false when the watch
// is over.
func (w *watch) handle(b []byte, emit func(*pb.FilesystemEvent) bool) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int(int32(binary.NativeEndian.Uint32(b[0:])))
		mask := binary.NativeEndian.Uint32(b[4:])
		n := int(binary.NativeEndian.Uint32(b[12:]))
		if len(b) < unix.SizeofInotifyEvent+n {
			break
		}
		name := strings.TrimRight(string(b[unix.SizeofInotifyEvent:unix.SizeofInotifyEvent+n]), "\x00")
		b = b[unix.SizeofInotifyEvent+n:]

		if mask&unix.IN_Q_OVERFLOW != 0 {
			w.log.Warn("filesystem events lost: the kernel's queue overflowed", "path", w.opts.path)
			continue
		}
		dir, ok := w.dirs[wd]
		if !ok {
			continue // a watch already forgotten
		}
		if mask&unix.IN_IGNORED != 0 {
			delete(w.dirs, wd)
			if dir == "." {
				return false // the watched directory is gone
			}
			continue
		}
		if name == "" {
			// An event on a watched directory itself: its parent's watch
			// reports it, and the root's removal ends the watch above.
			continue
		}
		rel := filepath.Join(dir, name)
		var found []string
		if w.opts.recursive && mask&unix.IN_ISDIR != 0 {
			switch {
			case mask&unix.IN_CREATE != 0:
				w.addTree(rel, &found)
			case mask&unix.IN_MOVED_TO != 0:
				w.addTree(rel, nil)
			case mask&unix.IN_MOVED_FROM != 0:
				w.forget(rel)
			}
		}
		if !emit(w.event(rel, eventType(mask))) {
			return false
		}
		for _, r := range found {
			if !emit(w.event(r, pb.EventType_EVENT_TYPE_CREATE)) {
				return false
			}
		}
	}
	return true
}

// addTree watches the new directory rel and everything below it.
func (w *watch) addTree(rel string, found *[]string) {
	_ = w.id.do(func() error {
		if err := w.add(rel); err != nil {
			w.logAddError(filepath.Join(w.root, rel), err)
			return nil
		}
		w.addBelow(rel, found)
		return nil
	})
}

// event builds the event for rel, with its entry if asked for and it still
// exists.
func (w *watch) event(rel string, t pb.EventType) *pb.FilesystemEvent {
	ev := &pb.FilesystemEvent{Name: rel, Type: t}
	if !w.opts.includeEntry || t == pb.EventType_EVENT_TYPE_REMOVE || t == pb.EventType_EVENT_TYPE_RENAME {
		return ev
	}
	_ = w.id.do(func() error {
		real := filepath.Join(w.root, rel)
		if fi, err := os.Lstat(real); err == nil {
			ev.Entry = w.names.entry(filepath.Join(w.opts.path, rel), real, fi)
		}
		return nil
	})
	return ev
}

// eventType maps an inotify mask to envd's event type, as fsnotify (which
// envd uses) does: a move into the directory is a CREATE, a move out a
// RENAME.
func eventType(mask uint32) pb.EventType {
	switch {
	case mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
		return pb.EventType_EVENT_TYPE_CREATE
	case mask&(unix.IN_DELETE|unix.IN_DELETE_SELF) != 0:
		return pb.EventType_EVENT_TYPE_REMOVE
	case mask&unix.IN_MODIFY != 0:
		return pb.EventType_EVENT_TYPE_WRITE
	case mask&(unix.IN_MOVED_FROM|unix.IN_MOVE_SELF) != 0:
		return pb.EventType_EVENT_TYPE_RENAME
	case mask&unix.IN_ATTRIB != 0:
		return pb.EventType_EVENT_TYPE_CHMOD
	default:
		return pb.EventType_EVENT_TYPE_UNSPECIFIED
	}
}

// stop ends run, waits for it to return and frees the inotify instance
// and the identity thread. emit must not block forever meanwhile.
func (w *watch) stop() {
	_ = w.f.Close() // run's read returns os.ErrClosed
	<-w.done
	w.id.close()
}
