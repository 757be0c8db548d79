package template

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// The archive a blob holds: a plain PAX tar of one directory tree, the
// tree's root as ".", every entry's owner unshifted (0..IDRange-1, so that
// servers with another IDShift can unpack it), hard links as links, xattrs
// (overlay's opaque marker, file capabilities) as SCHILY.xattr records,
// and overlay whiteouts (0:0 character devices) and FIFOs as themselves.
// Other devices and sockets are left out: a sandbox's runtime makes /dev.

const xattrPAX = "SCHILY.xattr."

// PackTree writes the tree at root to w as the object store's blobs hold
// trees, owners less shift (which they must be at least), leaving out the
// entries (and what is below them) whose paths relative to root are in
// skip. Snapshots and paused sandboxes (internal/sandbox) are stored this
// way too.
func PackTree(ctx context.Context, w io.Writer, root string, shift uint32, skip ...string) error {
	return packTreeSkip(ctx, w, root, shift, skip)
}

// UnpackTree makes the directory dst (which must not exist) from an
// archive PackTree wrote, adding shift to every owner; r is untrusted.
func UnpackTree(ctx context.Context, r io.Reader, dst string, shift uint32) error {
	return unpackTree(ctx, r, dst, shift)
}

func packTreeSkip(ctx context.Context, w io.Writer, root string, shift uint32, skip []string) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if slices.Contains(skip, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		uid, gid := st.Uid, st.Gid
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 && (!inRange(uid, shift) || !inRange(gid, shift)) {
			// A whiteout that overlayfs made in a running sandbox's upper
			// layer, with its mounter's (host root's) ids: only its kind
			// matters, so it goes as the box's root's.
			uid, gid = shift, shift
		}
		if !inRange(uid, shift) || !inRange(gid, shift) {
			return fmt.Errorf("%s: owner %d:%d is outside the store's id range", p, st.Uid, st.Gid)
		}
		hdr := &tar.Header{
			Name:    filepath.ToSlash(rel),
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(uid - shift),
			Gid:     int(gid - shift),
			ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
			Format:  tar.FormatPAX,
		}
		var body *os.File
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			hdr.Typeflag = tar.TypeDir
		case unix.S_IFREG:
			k := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := links[k]; ok && st.Nlink > 1 {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				break
			}
			if st.Nlink > 1 {
				links[k] = hdr.Name
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			body = f
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		case unix.S_IFCHR:
			if st.Rdev != 0 {
				return nil
			}
			hdr.Typeflag = tar.TypeChar // an overlay whiteout
		case unix.S_IFIFO:
			hdr.Typeflag = tar.TypeFifo
		default:
			return nil
		}
		xa, err := listXattrs(p)
		if err != nil {
			return err
		}
		for k, v := range xa {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[xattrPAX+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if body != nil {
			if n, err := io.Copy(tw, body); err != nil {
				return err
			} else if n != hdr.Size {
				return fmt.Errorf("%s changed while being packed", p)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// listXattrs returns p's extended attributes, without following a symlink.
func listXattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range splitNul(buf[:sz]) {
		if keep, err := keepXattr(name); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		} else if !keep {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		val := make([]byte, n)
		n, err = unix.Lgetxattr(p, name, val)
		if err != nil {
			return nil, err
		}
		out[name] = string(val[:n])
	}
	return out, nil
}

func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}

// unpackTree makes the directory dst (which must not exist) from the
// archive in r, adding shift to every owner. The archive is checked as
// untrusted input: names must stay beneath dst and nothing is written
// through a symlink (every entry is made through a descriptor of its
// parent directory, opened beneath dst by os.Root, which refuses to
// leave it).
func unpackTree(ctx context.Context, r io.Reader, dst string, shift uint32) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	type dirTime struct {
		rel string
		t   time.Time
	}
	var dirs []dirTime
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("bad archive: %w", err)
		}
		rel := path.Clean(hdr.Name)
		if !filepath.IsLocal(rel) && rel != "." {
			return errdefs.New(errdefs.ErrInvalidArgument, "archive entry %q leaves the tree", hdr.Name)
		}
		if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid >= IDRange || hdr.Gid >= IDRange {
			return errdefs.New(errdefs.ErrInvalidArgument, "archive entry %q: owner %d:%d outside 0..%d", hdr.Name, hdr.Uid, hdr.Gid, IDRange-1)
		}
		if err := unpackEntry(root, tr, hdr, rel, shift); err != nil {
			return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{rel, hdr.ModTime})
		}
	}
	// Directory times last, deepest first: making their entries changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := atParent(root, d.rel, func(dfd int, base string) error {
			ts := []unix.Timespec{unix.NsecToTimespec(d.t.UnixNano()), unix.NsecToTimespec(d.t.UnixNano())}
			return unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
		}); err != nil {
			return err
		}
	}
	return nil
}

// atParent calls fn with a descriptor of rel's parent directory, opened
// beneath root, and rel's last component ("." for the root itself).
func atParent(root *os.Root, rel string, fn func(dfd int, base string) error) error {
	dir, base := path.Split(rel)
	if dir == "" {
		dir = "."
	}
	if rel == "." {
		base = "."
	}
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if fi, err := d.Stat(); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return fn(int(d.Fd()), base)
}

func unpackEntry(root *os.Root, tr *tar.Reader, hdr *tar.Header, rel string, shift uint32) error {
	uid, gid := hdr.Uid+int(shift), hdr.Gid+int(shift)
	mode := uint32(hdr.Mode) & 0o7777
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	return atParent(root, rel, func(dfd int, base string) error {
		switch hdr.Typeflag {
		case tar.TypeDir:
			if base != "." {
				if err := unix.Mkdirat(dfd, base, 0o700); err != nil {
					return err
				}
			}
		case tar.TypeReg:
			if base == "." {
				return errors.New("the root is not a file")
			}
			fd, err := unix.Openat(dfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err != nil {
				return err
			}
			f := os.NewFile(uintptr(fd), base)
			_, err = io.CopyN(f, tr, hdr.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeLink:
			target := path.Clean(hdr.Linkname)
			if !filepath.IsLocal(target) {
				return errdefs.New(errdefs.ErrInvalidArgument, "hard link to %q outside the tree", hdr.Linkname)
			}
			return atParent(root, target, func(tfd int, tbase string) error {
				return unix.Linkat(tfd, tbase, dfd, base, 0)
			})
		case tar.TypeSymlink:
			// Stored as written and never followed here: it resolves inside
			// the sandbox, against the sandbox's root.
			if err := unix.Symlinkat(hdr.Linkname, dfd, base); err != nil {
				return err
			}
		case tar.TypeChar:
			if hdr.Devmajor != 0 || hdr.Devminor != 0 {
				return errdefs.New(errdefs.ErrInvalidArgument, "device %d:%d (only whiteouts are stored)", hdr.Devmajor, hdr.Devminor)
			}
			if err := unix.Mknodat(dfd, base, unix.S_IFCHR, 0); err != nil {
				return err
			}
		case tar.TypeFifo:
			if err := unix.Mkfifoat(dfd, base, 0o600); err != nil {
				return err
			}
		default:
			return errdefs.New(errdefs.ErrInvalidArgument, "unsupported entry type %q", hdr.Typeflag)
		}
		// /proc/self/fd/N names the parent itself; the xattr calls below
		// do not follow base.
		at := "/proc/self/fd/" + strconv.Itoa(dfd) + "/" + base
		for k, v := range hdr.PAXRecords {
			name, ok := strings.CutPrefix(k, xattrPAX)
			if !ok {
				continue
			}
			if err := unix.Lsetxattr(at, name, []byte(v), 0); err != nil {
				return fmt.Errorf("xattr %s: %w", name, err)
			}
		}
		if err := unix.Fchownat(dfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeSymlink {
			// After chown, which clears set-id bits; base is no symlink.
			if err := unix.Fchmodat(dfd, base, mode, 0); err != nil {
				return err
			}
		}
		return unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
}
