package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/wire"
)

// maxListEntries bounds one directory listing.
const maxListEntries = 100000

// Owner is the owner and mode a content write gives what it creates; nil
// fields take the defaults (DefaultOwner; 0644 for files, 0755 for
// directories).
type Owner struct {
	UID, GID, Mode *uint32
}

// root opens volume id's mounted file system as an os.Root, which confines
// every path below it (see the package doc).
func (m *Manager) root(ctx context.Context, id string) (*os.Root, error) {
	dir, err := m.Mount(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", id, err)
	}
	return r, nil
}

// clean turns a content path (absolute or relative to the volume's root)
// into the volume-absolute path and the path relative to the root ("."
// for the root). ".." is refused outright rather than resolved: a caller
// naming it means to leave where it is.
func clean(p string) (abs, rel string, err error) {
	if p == "" {
		return "", "", errdefs.New(errdefs.ErrInvalidArgument, "path is required")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", "", errdefs.New(errdefs.ErrInvalidArgument, "path must not contain NUL bytes")
	}
	if len(p) > 4096 {
		return "", "", errdefs.New(errdefs.ErrInvalidArgument, "path is too long")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", "", errdefs.New(errdefs.ErrInvalidArgument, "path %q leaves the volume: '..' is not allowed", p)
		}
	}
	abs = path.Clean("/" + p)
	rel = strings.TrimPrefix(abs, "/")
	if rel == "" {
		rel = "."
	}
	return abs, rel, nil
}

// fsError gives a file system error its class.
func fsError(err error, p string) error {
	var errno syscall.Errno
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return errdefs.Wrap(errdefs.ErrNotFound, err, "path %q not found", p)
	case errors.Is(err, fs.ErrExist):
		return errdefs.Wrap(errdefs.ErrConflict, err, "path %q exists", p)
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return errdefs.Wrap(errdefs.ErrTooLarge, err, "the volume is full (its size quota is reached)")
	case errors.Is(err, unix.ENOTDIR):
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "a parent of %q is not a directory", p)
	case errors.Is(err, unix.EISDIR):
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "path %q is a directory", p)
	case errors.Is(err, unix.ENOTEMPTY):
		return errdefs.Wrap(errdefs.ErrConflict, err, "directory %q is not empty", p)
	case errors.Is(err, unix.ELOOP):
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "too many symlinks in %q", p)
	case errors.Is(err, fs.ErrPermission):
		return errdefs.Wrap(errdefs.ErrPermissionDenied, err, "path %q is not accessible", p)
	case errors.As(err, &errno):
		return fmt.Errorf("volume path %s: %w", p, err)
	}
	// What os.Root refuses without an errno: a path (through a symlink)
	// that leaves the volume.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return errdefs.Wrap(errdefs.ErrPermissionDenied, err, "path %q leads out of the volume", p)
	}
	return fmt.Errorf("volume path %s: %w", p, err)
}

// stat describes the entry at rel (not following a final symlink).
func (m *Manager) stat(r *os.Root, abs, rel string) (wire.VolumeEntryStat, error) {
	fi, err := r.Lstat(rel)
	if err != nil {
		return wire.VolumeEntryStat{}, fsError(err, abs)
	}
	e := m.entry(fi, abs)
	if fi.Mode()&fs.ModeSymlink != 0 {
		if t, err := r.Readlink(rel); err == nil {
			e.Target = t
		}
	}
	return e, nil
}

func (m *Manager) entry(fi fs.FileInfo, abs string) wire.VolumeEntryStat {
	e := wire.VolumeEntryStat{Name: path.Base(abs), Path: abs, Size: fi.Size(), Mode: uint32(fi.Mode().Perm())}
	if abs == "/" {
		e.Name = "/"
	}
	switch {
	case fi.Mode().IsRegular():
		e.Type = "file"
	case fi.IsDir():
		e.Type = "directory"
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = "symlink"
	default:
		e.Type = "unknown"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Mode = st.Mode & 0o7777
		e.UID, e.GID = m.boxID(st.Uid), m.boxID(st.Gid)
		e.Atime = time.Unix(st.Atim.Sec, st.Atim.Nsec).UTC()
		e.Mtime = time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC()
		e.Ctime = time.Unix(st.Ctim.Sec, st.Ctim.Nsec).UTC()
	}
	return e
}

// Stat describes path p of volume id.
func (m *Manager) Stat(ctx context.Context, id, p string) (wire.VolumeEntryStat, error) {
	abs, rel, err := clean(p)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	r, err := m.root(ctx, id)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	defer r.Close()
	return m.stat(r, abs, rel)
}

// ListDir lists directory p of volume id, depth levels deep (at least 1).
// Symlinked directories are listed, not entered.
func (m *Manager) ListDir(ctx context.Context, id, p string, depth int) ([]wire.VolumeEntryStat, error) {
	abs, rel, err := clean(p)
	if err != nil {
		return nil, err
	}
	depth = max(depth, 1)
	r, err := m.root(ctx, id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	fi, err := r.Lstat(rel)
	if err != nil {
		return nil, fsError(err, abs)
	}
	if !fi.IsDir() {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "path %q is not a directory", abs)
	}
	out := []wire.VolumeEntryStat{}
	var walk func(abs, rel string, level int) error
	walk = func(abs, rel string, level int) error {
		f, err := r.Open(rel)
		if err != nil {
			return fsError(err, abs)
		}
		ents, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return fsError(err, abs)
		}
		for _, de := range ents {
			if len(out) >= maxListEntries {
				return errdefs.New(errdefs.ErrTooLarge, "more than %d entries; list a smaller depth", maxListEntries)
			}
			cabs, crel := path.Join(abs, de.Name()), path.Join(rel, de.Name())
			e, err := m.stat(r, cabs, crel)
			if err != nil {
				continue // gone meanwhile
			}
			out = append(out, e)
			if e.Type == "directory" && level < depth {
				if err := walk(cabs, crel, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(abs, rel, 1); err != nil {
		return nil, err
	}
	return out, nil
}

// ids resolves an Owner's ids to host ids, with the defaults.
func (m *Manager) ids(o Owner) (uid, gid int, err error) {
	u, g := uint32(DefaultOwner), uint32(DefaultOwner)
	if o.UID != nil {
		u = *o.UID
	}
	if o.GID != nil {
		g = *o.GID
	}
	if m.cfg.IDShift != 0 && (u >= idRange || g >= idRange) {
		return 0, 0, errdefs.New(errdefs.ErrInvalidArgument, "uid and gid must be below %d", idRange)
	}
	return int(m.hostID(u)), int(m.hostID(g)), nil
}

func mode(o Owner, def fs.FileMode) (fs.FileMode, error) {
	if o.Mode == nil {
		return def, nil
	}
	if *o.Mode > 0o777 {
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "mode %#o is not a permission mode (0 to 0777)", *o.Mode)
	}
	return fs.FileMode(*o.Mode), nil
}

// mkdirs makes the missing directories of rel (parents first), owned by
// uid:gid with perm, and reports whether the last one was made. Without
// parents, only the last may be missing.
func mkdirs(r *os.Root, rel string, parents bool, uid, gid int, perm fs.FileMode) (bool, error) {
	if rel == "." {
		return false, nil
	}
	parts := strings.Split(rel, "/")
	made := false
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		if !last && !parents {
			continue
		}
		err := r.Mkdir(sub, perm)
		switch {
		case err == nil:
			made = last
			if err := r.Lchown(sub, uid, gid); err != nil {
				return made, err
			}
			// Mkdir's mode is cut by the umask.
			if err := r.Chmod(sub, perm); err != nil {
				return made, err
			}
		case errors.Is(err, fs.ErrExist):
			fi, serr := r.Stat(sub)
			if serr != nil {
				return false, serr
			}
			if !fi.IsDir() {
				return false, unix.ENOTDIR
			}
		default:
			return false, err
		}
	}
	return made, nil
}

// MakeDir makes directory p in volume id; with parents its missing parents
// too, and an existing directory is then no error.
func (m *Manager) MakeDir(ctx context.Context, id, p string, parents bool, o Owner) (wire.VolumeEntryStat, error) {
	abs, rel, err := clean(p)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	uid, gid, err := m.ids(o)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	perm, err := mode(o, 0o755)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	r, err := m.root(ctx, id)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	defer r.Close()
	if rel == "." && !parents {
		return wire.VolumeEntryStat{}, errdefs.New(errdefs.ErrConflict, "the volume's root exists")
	}
	if !parents {
		if _, err := r.Lstat(rel); err == nil {
			return wire.VolumeEntryStat{}, errdefs.New(errdefs.ErrConflict, "path %q exists", abs)
		}
	}
	if _, err := mkdirs(r, rel, parents, uid, gid, perm); err != nil {
		return wire.VolumeEntryStat{}, fsError(err, abs)
	}
	return m.stat(r, abs, rel)
}

// WriteFile writes body to file p of volume id, replacing the file if it
// exists and making missing parent directories. The file appears whole or
// not at all (written beside it, then renamed over it).
func (m *Manager) WriteFile(ctx context.Context, id, p string, body io.Reader, o Owner) (wire.VolumeEntryStat, error) {
	abs, rel, err := clean(p)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	if rel == "." {
		return wire.VolumeEntryStat{}, errdefs.New(errdefs.ErrInvalidArgument, "path %q is the volume's root, not a file", abs)
	}
	uid, gid, err := m.ids(o)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	perm, err := mode(o, 0o644)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	r, err := m.root(ctx, id)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	defer r.Close()
	if fi, err := r.Lstat(rel); err == nil && fi.IsDir() {
		return wire.VolumeEntryStat{}, errdefs.New(errdefs.ErrInvalidArgument, "path %q is a directory", abs)
	}
	dir := path.Dir(rel)
	if _, err := mkdirs(r, dir, true, uid, gid, 0o755); err != nil {
		return wire.VolumeEntryStat{}, fsError(err, path.Dir(abs))
	}
	tmp := path.Join(dir, fmt.Sprintf(".sbx-upload-%s", newID()))
	// O_EXCL|O_NOFOLLOW: the temporary name is new, never something a
	// sandbox placed there.
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, perm)
	if err != nil {
		return wire.VolumeEntryStat{}, fsError(err, abs)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			r.Remove(tmp)
		}
	}()
	if err := f.Chown(uid, gid); err != nil {
		return wire.VolumeEntryStat{}, fsError(err, abs)
	}
	if err := f.Chmod(perm); err != nil {
		return wire.VolumeEntryStat{}, fsError(err, abs)
	}
	if _, err := io.Copy(f, body); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) || errors.Is(err, unix.ENOSPC) {
			return wire.VolumeEntryStat{}, fsError(err, abs)
		}
		return wire.VolumeEntryStat{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "reading the upload failed")
	}
	if err := f.Close(); err != nil {
		return wire.VolumeEntryStat{}, fsError(err, abs)
	}
	if err := r.Rename(tmp, rel); err != nil {
		return wire.VolumeEntryStat{}, fsError(err, abs)
	}
	done = true
	return m.stat(r, abs, rel)
}

// OpenFile opens file p of volume id for reading. A symlink is followed
// while it stays in the volume.
func (m *Manager) OpenFile(ctx context.Context, id, p string) (*os.File, error) {
	abs, rel, err := clean(p)
	if err != nil {
		return nil, err
	}
	r, err := m.root(ctx, id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// O_NONBLOCK: a FIFO a sandbox left there must not hang the request.
	f, err := r.OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fsError(err, abs)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fsError(err, abs)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "path %q is not a regular file", abs)
	}
	return f, nil
}

// Remove removes path p of volume id, a directory with everything in it.
// A symlink is removed, never followed.
func (m *Manager) Remove(ctx context.Context, id, p string) error {
	abs, rel, err := clean(p)
	if err != nil {
		return err
	}
	if rel == "." {
		return errdefs.New(errdefs.ErrInvalidArgument, "the volume's root cannot be removed; destroy the volume instead")
	}
	r, err := m.root(ctx, id)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := r.Lstat(rel); err != nil {
		return fsError(err, abs)
	}
	return fsError(r.RemoveAll(rel), abs)
}

// SetMetadata sets the owner and mode of path p of volume id (a symlink's
// own owner; a mode is set on what it points to, in the volume).
func (m *Manager) SetMetadata(ctx context.Context, id, p string, md wire.VolumeMetadata) (wire.VolumeEntryStat, error) {
	abs, rel, err := clean(p)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	if md.Mode != nil && *md.Mode > 0o7777 {
		return wire.VolumeEntryStat{}, errdefs.New(errdefs.ErrInvalidArgument, "mode %#o is not a file mode (0 to 07777)", *md.Mode)
	}
	if m.cfg.IDShift != 0 && ((md.UID != nil && *md.UID >= idRange) || (md.GID != nil && *md.GID >= idRange)) {
		return wire.VolumeEntryStat{}, errdefs.New(errdefs.ErrInvalidArgument, "uid and gid must be below %d", idRange)
	}
	r, err := m.root(ctx, id)
	if err != nil {
		return wire.VolumeEntryStat{}, err
	}
	defer r.Close()
	if _, err := r.Lstat(rel); err != nil {
		return wire.VolumeEntryStat{}, fsError(err, abs)
	}
	if md.UID != nil || md.GID != nil {
		uid, gid := -1, -1
		if md.UID != nil {
			uid = int(m.hostID(*md.UID))
		}
		if md.GID != nil {
			gid = int(m.hostID(*md.GID))
		}
		if err := r.Lchown(rel, uid, gid); err != nil {
			return wire.VolumeEntryStat{}, fsError(err, abs)
		}
	}
	if md.Mode != nil {
		// setuid and setgid bits are kept from the host by the mount's
		// nosuid; they are the sandbox's own business.
		fm := fs.FileMode(*md.Mode & 0o777)
		if *md.Mode&0o4000 != 0 {
			fm |= fs.ModeSetuid
		}
		if *md.Mode&0o2000 != 0 {
			fm |= fs.ModeSetgid
		}
		if *md.Mode&0o1000 != 0 {
			fm |= fs.ModeSticky
		}
		if err := r.Chmod(rel, fm); err != nil {
			return wire.VolumeEntryStat{}, fsError(err, abs)
		}
	}
	return m.stat(r, abs, rel)
}
