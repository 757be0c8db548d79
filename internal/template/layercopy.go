package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
)

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// copyUpper copies the tree src (an overlay upper directory) to dst, which
// must not exist, keeping file types, owners, modes, times, hard links and
// the extended attributes that matter to a layer. It returns how many
// entries below the root it copied.
//
// src was written by a sandbox, so its contents are untrusted: nothing in
// it is ever followed (symlinks are recreated as symlinks, every call is
// an l* or *at call on a path this function made), and only overlay
// whiteouts are copied as device nodes (the sandbox cannot make others,
// and a layer must not carry any).
func copyUpper(ctx context.Context, src, dst string, skip []string) (int, error) {
	c := &upperCopier{ctx: ctx, links: map[[2]uint64]string{}, skip: map[string]bool{}}
	for _, s := range skip {
		c.skip[s] = true
	}
	if err := c.copy(src, dst, true); err != nil {
		return 0, err
	}
	return c.n, nil
}

type upperCopier struct {
	ctx   context.Context
	links map[[2]uint64]string
	skip  map[string]bool
	n     int
	buf   []byte
}

// Overlay keeps its own bookkeeping in trusted.overlay.* xattrs. Only
// "opaque" means something in a lower layer; the others (origin, impure,
// nlink) describe the upper's relation to the lowers of that one mount.
// redirect and metacopy would make the layer depend on the lowers' paths:
// sbx mounts without them, so their presence means the upper is not one
// sbx made.
func keepXattr(name string) (keep bool, err error) {
	switch {
	case name == "trusted.overlay.opaque":
		return true, nil
	case name == "trusted.overlay.redirect", name == "trusted.overlay.metacopy":
		return false, fmt.Errorf("overlay %s is not supported in a layer", name)
	case strings.HasPrefix(name, "trusted.overlay."):
		return false, nil
	}
	return true, nil // security.capability, user.*, system.posix_acl_*
}

func (c *upperCopier) copy(src, dst string, top bool) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if !top {
		c.n++
	}
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		k := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := c.links[k]; ok {
			return os.Link(first, dst)
		}
		c.links[k] = dst
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdir(dst, 0o700); err != nil {
			return err
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		for _, n := range names {
			if top && c.skip[n] {
				continue
			}
			if err := c.copy(filepath.Join(src, n), filepath.Join(dst, n), false); err != nil {
				return err
			}
		}
	case unix.S_IFREG:
		if err := c.copyFile(src, dst); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFCHR:
		if unix.Major(uint64(st.Rdev)) != 0 || unix.Minor(uint64(st.Rdev)) != 0 {
			return nil // not a whiteout: a layer carries no devices
		}
		if err := unix.Mknod(dst, unix.S_IFCHR|0o000, 0); err != nil {
			return fmt.Errorf("whiteout %s: %w", dst, err)
		}
	case unix.S_IFIFO:
		if err := unix.Mkfifo(dst, 0o600); err != nil {
			return err
		}
	default:
		return nil // sockets mean nothing in a layer
	}
	if err := c.copyXattrs(src, dst); err != nil {
		return err
	}
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// After chown, which clears set-id bits.
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func (c *upperCopier) copyFile(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil { // copy_file_range where it can
		out.Close()
		return err
	}
	return out.Close()
}

func (c *upperCopier) copyXattrs(src, dst string) error {
	if c.buf == nil {
		c.buf = make([]byte, 64<<10)
	}
	n, err := unix.Llistxattr(src, c.buf)
	if errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("xattrs of %s: %w", src, err)
	}
	names := strings.Split(strings.TrimRight(string(c.buf[:n]), "\x00"), "\x00")
	for _, name := range names {
		if name == "" {
			continue
		}
		keep, err := keepXattr(name)
		if err != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%v", err)
		}
		if !keep {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(src, name, val)
		if err != nil {
			return fmt.Errorf("xattr %s of %s: %w", name, src, err)
		}
		if err := unix.Lsetxattr(dst, name, val[:m], 0); err != nil {
			return fmt.Errorf("xattr %s on %s: %w", name, dst, err)
		}
	}
	return nil
}

// ExtractOptions control ExtractTar.
type ExtractOptions struct {
	// Shift is added to every entry's uid and gid (the store's IDShift for
	// files that a sandbox sees).
	Shift uint32
	// Owner, when not nil, owns every entry instead of the archive's ids
	// (before Shift): {uid, gid}.
	Owner *[2]int
	// MaxBytes bounds the file content written; 0 means no bound beyond
	// DefaultMaxImportBytes. Beyond it: errdefs.ErrTooLarge.
	MaxBytes int64
	// Progress receives warnings about skipped entries; nil discards them.
	Progress io.Writer
}

// ExtractTar unpacks the plain (uncompressed) tar stream r into the
// directory open as dirFD, as untrusted input: entries that are absolute,
// contain "..", or would be written through a symlink are refused with
// errdefs.ErrInvalidArgument and nothing is written outside the directory;
// device nodes and FIFOs are skipped. Whiteout names are ordinary files.
func ExtractTar(ctx context.Context, dirFD int, r io.Reader, o ExtractOptions) error {
	fd, err := unix.FcntlInt(uintptr(dirFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	max := o.MaxBytes
	if max <= 0 {
		max = DefaultMaxImportBytes
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	x := &extractor{root: fd, shift: o.Shift, max: max, progress: o.Progress, plain: true}
	if o.Owner != nil {
		x.ignoreOwners = true
		x.shift = o.Shift
		x.owner = *o.Owner
	}
	defer x.close()
	return x.applyLayer(ctx, r)
}
