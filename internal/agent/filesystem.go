package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/sbxdev/sbx/gen/filesystem"
	"github.com/sbxdev/sbx/gen/filesystem/filesystemconnect"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// filesystemService implements envd's filesystem.Filesystem service. Every
// call runs with the calling user's filesystem identity (see [fsIdentity]);
// relative paths and "~" are taken from that user's home, as envd does.
// File contents go through /files, not through this service.
type filesystemService struct {
	a *Agent
}

var _ filesystemconnect.FilesystemHandler = filesystemService{}

// caller returns the account a request runs as.
func (s filesystemService) caller(h http.Header) (*account, error) {
	return systemUsers.lookup(s.a.requestUser(h))
}

// target returns the caller and the absolute form of path.
func (s filesystemService) target(h http.Header, path string) (*account, string, error) {
	u, err := s.caller(h)
	if err != nil {
		return nil, "", err
	}
	p, err := resolvePath(u, path)
	if err != nil {
		return nil, "", err
	}
	return u, p, nil
}

func (s filesystemService) Stat(ctx context.Context, req *connect.Request[pb.StatRequest]) (*connect.Response[pb.StatResponse], error) {
	u, path, err := s.target(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	names := systemUsers.names()
	var entry *pb.EntryInfo
	err = asUser(u, func() error {
		fi, err := os.Lstat(path)
		if err != nil {
			return fsError(err, "stat", path)
		}
		entry = names.entry(path, path, fi)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.StatResponse{Entry: entry}), nil
}

func (s filesystemService) MakeDir(ctx context.Context, req *connect.Request[pb.MakeDirRequest]) (*connect.Response[pb.MakeDirResponse], error) {
	u, path, err := s.target(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	names := systemUsers.names()
	var entry *pb.EntryInfo
	err = asUser(u, func() error {
		fi, err := os.Stat(path)
		switch {
		case err == nil && fi.IsDir():
			// The SDK's makeDir returns false on this code.
			return errdefs.New(errdefs.ErrConflict, "directory %q already exists", path)
		case err == nil:
			return errdefs.New(errdefs.ErrInvalidArgument, "%q already exists and is not a directory", path)
		}
		if err := mkdirAll(path, u); err != nil {
			return err
		}
		if fi, err = os.Lstat(path); err != nil {
			return fsError(err, "stat", path)
		}
		entry = names.entry(path, path, fi)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.a.log.Debug("directory made", "path", path, "user", u.name)
	return connect.NewResponse(&pb.MakeDirResponse{Entry: entry}), nil
}

// mkdirAll makes dir and its missing parents, each owned by u (as envd
// does, so that a directory made for a user is the user's even where a
// set-group-ID parent would give it another group).
func mkdirAll(dir string, u *account) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if fi.IsDir() {
			return nil
		}
		return errdefs.New(errdefs.ErrInvalidArgument, "%q exists and is not a directory", dir)
	}
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return fsError(err, "make directory", dir)
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirAll(parent, u); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if fi, serr := os.Stat(dir); errors.Is(err, fs.ErrExist) && serr == nil && fi.IsDir() {
			return nil // made by someone else meanwhile
		}
		return fsError(err, "make directory", dir)
	}
	if err := os.Lchown(dir, int(u.uid), int(u.gid)); err != nil {
		return fsError(err, "set the owner of", dir)
	}
	return nil
}

func (s filesystemService) Move(ctx context.Context, req *connect.Request[pb.MoveRequest]) (*connect.Response[pb.MoveResponse], error) {
	u, src, err := s.target(req.Header(), req.Msg.GetSource())
	if err != nil {
		return nil, err
	}
	dst, err := resolvePath(u, req.Msg.GetDestination())
	if err != nil {
		return nil, err
	}
	names := systemUsers.names()
	var entry *pb.EntryInfo
	err = asUser(u, func() error {
		if _, err := os.Lstat(src); err != nil {
			return fsError(err, "move", src)
		}
		// As envd: the destination's missing parents are made.
		if err := mkdirAll(filepath.Dir(dst), u); err != nil {
			return err
		}
		if err := os.Rename(src, dst); err != nil {
			if errors.Is(err, syscall.EXDEV) {
				return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "cannot move %q to %q: they are on different filesystems", src, dst)
			}
			return fsError(err, "move "+strconv.Quote(src)+" to", dst)
		}
		fi, err := os.Lstat(dst)
		if err != nil {
			return fsError(err, "stat", dst)
		}
		entry = names.entry(dst, dst, fi)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.a.log.Debug("moved", "source", src, "destination", dst, "user", u.name)
	return connect.NewResponse(&pb.MoveResponse{Entry: entry}), nil
}

func (s filesystemService) ListDir(ctx context.Context, req *connect.Request[pb.ListDirRequest]) (*connect.Response[pb.ListDirResponse], error) {
	u, path, err := s.target(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	depth := int(req.Msg.GetDepth())
	if depth == 0 {
		depth = 1
	}
	names := systemUsers.names()
	var entries []*pb.EntryInfo
	err = asUser(u, func() error {
		var err error
		entries, err = listDir(ctx, names, path, depth)
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ListDirResponse{Entries: entries}), nil
}

// listDir lists dir's entries down to depth levels (1: its children), in
// lexical order. A symlink to a directory is listed but never descended
// into, so links cannot lead the walk out of the tree or around a loop; dir
// itself may be such a link. Entries' paths are under dir as given.
// Subdirectories the caller cannot read are listed without their contents.
func listDir(ctx context.Context, names *idNames, dir string, depth int) ([]*pb.EntryInfo, error) {
	root, err := resolveDir(dir, "list")
	if err != nil {
		return nil, err
	}
	entries := []*pb.EntryInfo{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if err != nil {
			if p == root {
				return fsError(err, "list", dir)
			}
			if d != nil && d.IsDir() {
				return filepath.SkipDir // listed already; its contents are not readable
			}
			return nil // gone meanwhile
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil // gone meanwhile
		}
		entries = append(entries, names.entry(filepath.Join(dir, rel), p, fi))
		if d.IsDir() && strings.Count(rel, string(filepath.Separator))+1 >= depth {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// resolveDir returns dir with its symlinks resolved, if it is a directory.
func resolveDir(dir, op string) (string, error) {
	// Stat first: its errors carry an errno (a symlink loop is ELOOP),
	// where EvalSymlinks's do not always.
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fsError(err, op, dir)
	}
	if !fi.IsDir() {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "%q is not a directory", dir)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fsError(err, op, dir)
	}
	return root, nil
}

func (s filesystemService) Remove(ctx context.Context, req *connect.Request[pb.RemoveRequest]) (*connect.Response[pb.RemoveResponse], error) {
	u, path, err := s.target(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	err = asUser(u, func() error {
		// As envd: removing what does not exist succeeds (os.RemoveAll),
		// so a remove can be retried. A symlink is removed, not what it
		// points to.
		if err := os.RemoveAll(path); err != nil {
			return fsError(err, "remove", path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.a.log.Debug("removed", "path", path, "user", u.name)
	return connect.NewResponse(&pb.RemoveResponse{}), nil
}

// resolvePath makes p absolute as envd does: "~" and "~/..." are u's home,
// other relative paths are taken from the home.
func resolvePath(u *account, p string) (string, error) {
	if p == "" {
		// Not the home, as envd would have it: Remove("") must not mean
		// "remove my home directory".
		return "", errdefs.New(errdefs.ErrInvalidArgument, "path is required")
	}
	if strings.ContainsRune(p, 0) {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "path contains a NUL byte")
	}
	home := u.home
	if !filepath.IsAbs(home) {
		home = "/"
	}
	switch {
	case p == "~" || strings.HasPrefix(p, "~/"):
		p = filepath.Join(home, p[1:])
	case !filepath.IsAbs(p):
		p = filepath.Join(home, p)
	}
	return filepath.Clean(p), nil
}

// fsError classifies err from a filesystem call; the message names op and
// path, both the caller's own.
func fsError(err error, op, path string) error {
	var class error
	var why string
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		class, why = errdefs.ErrNotFound, "no such file or directory"
	case errors.Is(err, fs.ErrPermission):
		class, why = errdefs.ErrPermissionDenied, "permission denied"
	case errors.Is(err, syscall.ENOTEMPTY):
		class, why = errdefs.ErrConflict, "directory not empty"
	case errors.Is(err, fs.ErrExist):
		class, why = errdefs.ErrConflict, "already exists"
	case errors.Is(err, syscall.EISDIR):
		class, why = errdefs.ErrInvalidArgument, "is a directory"
	case errors.Is(err, syscall.ELOOP):
		class, why = errdefs.ErrInvalidArgument, "too many levels of symbolic links"
	case errors.Is(err, syscall.ENAMETOOLONG):
		class, why = errdefs.ErrInvalidArgument, "file name too long"
	case errors.Is(err, syscall.EINVAL):
		class, why = errdefs.ErrInvalidArgument, "invalid argument"
	case errors.Is(err, syscall.EROFS):
		class, why = errdefs.ErrFailedPrecondition, "read-only file system"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		class, why = errdefs.ErrFailedPrecondition, "no space left on device"
	case errors.Is(err, syscall.EBUSY):
		class, why = errdefs.ErrFailedPrecondition, "device or resource busy"
	default:
		return fmt.Errorf("%s %q: %w", op, path, err)
	}
	return errdefs.Wrap(class, err, "%s %q: %s", op, path, why)
}

// idNames names users and groups by id from the sandbox's own /etc/passwd
// and /etc/group, read once per request.
type idNames struct {
	users, groups map[uint32]string
}

func (db userDB) names() *idNames {
	n := &idNames{users: map[uint32]string{}, groups: map[uint32]string{}}
	for _, f := range []struct {
		path string
		m    map[uint32]string
	}{{db.passwd, n.users}, {db.group, n.groups}} {
		_ = scanColonFile(f.path, 3, func(fields []string) bool {
			id, err := strconv.ParseUint(fields[2], 10, 32)
			if _, dup := f.m[uint32(id)]; err == nil && !dup {
				f.m[uint32(id)] = fields[0]
			}
			return true
		})
	}
	return n
}

func (n *idNames) user(id uint32) string {
	if name, ok := n.users[id]; ok {
		return name
	}
	return strconv.FormatUint(uint64(id), 10)
}

func (n *idNames) group(id uint32) string {
	if name, ok := n.groups[id]; ok {
		return name
	}
	return strconv.FormatUint(uint64(id), 10)
}

// entry describes fi (from lstat of real) as an EntryInfo with path shown.
// As envd: a symlink has the type and permission bits of what it points to,
// and symlink_target is that target's absolute path; a link that leads
// nowhere (dangling, a loop) is FILE_TYPE_SYMLINK with the link's own text
// as its target. Other kinds (sockets, devices, FIFOs) are
// FILE_TYPE_UNSPECIFIED, which the SDK leaves out of listings.
func (n *idNames) entry(shown, real string, fi fs.FileInfo) *pb.EntryInfo {
	e := &pb.EntryInfo{
		Name:         filepath.Base(shown),
		Type:         fileType(fi.Mode()),
		Path:         shown,
		Size:         fi.Size(),
		Mode:         modeBits(fi),
		Permissions:  fi.Mode().String(),
		ModifiedTime: timestamppb.New(fi.ModTime()),
		Metadata:     readMetadata(real),
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Owner, e.Group = n.user(st.Uid), n.group(st.Gid)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(real)
		var tfi fs.FileInfo
		if err == nil {
			tfi, err = os.Stat(target)
		}
		if err == nil {
			e.SymlinkTarget = &target
			e.Type, e.Mode = fileType(tfi.Mode()), modeBits(tfi)
		} else if link, err := os.Readlink(real); err == nil {
			e.SymlinkTarget = &link
		}
	}
	return e
}

func fileType(m fs.FileMode) pb.FileType {
	switch {
	case m.IsRegular():
		return pb.FileType_FILE_TYPE_FILE
	case m.IsDir():
		return pb.FileType_FILE_TYPE_DIRECTORY
	case m&fs.ModeSymlink != 0:
		return pb.FileType_FILE_TYPE_SYMLINK
	default:
		return pb.FileType_FILE_TYPE_UNSPECIFIED
	}
}

// modeBits returns the permission bits with set-user-ID, set-group-ID and
// sticky, as chmod(1) writes them (0o4755).
func modeBits(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Mode & 0o7777
	}
	return uint32(fi.Mode().Perm())
}

// networkFS are the filesystems on which a watch must be asked for
// explicitly (allow_network_mounts): inotify sees only the changes made
// through this machine, so events from elsewhere never come.
var networkFS = map[int64]string{
	unix.NFS_SUPER_MAGIC:  "NFS",
	unix.CIFS_SUPER_MAGIC: "CIFS",
	unix.SMB_SUPER_MAGIC:  "SMB",
	unix.SMB2_SUPER_MAGIC: "SMB2",
	unix.FUSE_SUPER_MAGIC: "FUSE",
}
