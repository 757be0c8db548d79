package build

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/template"
)

// COPY and ADD.
//
// Threats: sources come from a user's build context, destinations lie in
// a sandbox's root filesystem that earlier steps (code the user ran) may
// have filled with symlinks pointing anywhere on the host. So sources are
// resolved beneath the context directory by the kernel (openat2
// RESOLVE_BENEATH: no "..", no absolute symlinks, nothing outside), and
// destinations inside the rootfs as the sandbox would see them (openat2
// RESOLVE_IN_ROOT: "/" and ".." stop at the sandbox's root). Every file is
// created with O_NOFOLLOW|O_EXCL after removing what was there.

// copyPlan is a COPY or ADD resolved against the context.
type copyPlan struct {
	add     bool
	ctxDir  string
	srcs    []string // relative to ctxDir, cleaned, "." for the whole context
	dest    string   // absolute, in the sandbox
	destDir bool     // dest names a directory (trailing slash or several sources)
	owner   *[2]int  // --chown resolved, nil: root (COPY) or the archive's (ADD)
	chown   string   // --chown as given, resolved in the rootfs
	chmod   *uint32
	hash    string
}

func (r *run) planCopy(in Instruction) (*copyPlan, error) {
	var args []string
	if in.JSON {
		for _, a := range in.Args {
			e, err := expand(a, r.st.lookup)
			if err != nil {
				return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: %v", where(in), err)
			}
			args = append(args, e)
		}
	} else if in.Line == 0 && len(in.Args) > 1 {
		args = in.Args // E2B steps: [src, dest], as given
	} else {
		var err error
		args, err = words(in.Raw, r.st.lookup)
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: %v", where(in), err)
		}
	}
	if len(args) < 2 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: want %s SOURCE... DEST", where(in), in.Cmd)
	}
	p := &copyPlan{add: in.Cmd == "ADD", ctxDir: firstNonEmpty(in.Context, r.spec.Context), chown: in.Flags["chown"]}
	if p.chown == "" && r.spec.E2B {
		p.chown = r.st.User // E2B: copies belong to the current user
	}
	if p.ctxDir == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: the build has no context to copy from", where(in))
	}
	if m, ok := in.Flags["chmod"]; ok && m != "" {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil || v > 0o7777 {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: --chmod=%s: want an octal mode such as 755", where(in), m)
		}
		mode := uint32(v)
		p.chmod = &mode
	}
	dest := args[len(args)-1]
	p.destDir = strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		dest = path.Join(firstNonEmpty(r.st.Workdir, "/"), dest)
	}
	p.dest = path.Clean(dest)
	for _, s := range args[:len(args)-1] {
		if strings.Contains(s, "://") {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: %q: remote URLs are not supported; put the file in the build context", where(in), s)
		}
		clean := path.Clean("/" + s)[1:] // "/x" means the context's x, as in Docker
		if strings.HasPrefix(path.Clean(s), "../") || path.Clean(s) == ".." {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: source %q is outside the build context", where(in), s)
		}
		if clean == "" {
			clean = "."
		}
		matches, err := r.glob(p.ctxDir, clean)
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: source %q: %v", where(in), s, err)
		}
		if len(matches) == 0 {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: source %q: no such file in the build context", where(in), s)
		}
		p.srcs = append(p.srcs, matches...)
	}
	if len(p.srcs) > 1 {
		p.destDir = true
	}
	h, err := hashSources(p.ctxDir, p.srcs)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%s: %v", where(in), err)
	}
	p.hash = h
	return p, nil
}

// glob expands a pattern relative to the context (no pattern: the path
// itself, if it exists beneath the context).
func (r *run) glob(ctxDir, pat string) ([]string, error) {
	if !strings.ContainsAny(pat, "*?[") {
		if _, err := statBeneath(ctxDir, pat); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return nil, err
		}
		return []string{pat}, nil
	}
	ms, err := filepath.Glob(filepath.Join(ctxDir, pat))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		rel, err := filepath.Rel(ctxDir, m)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		if _, err := statBeneath(ctxDir, rel); err == nil {
			out = append(out, filepath.ToSlash(rel))
		}
	}
	sort.Strings(out)
	return out, nil
}

// openBeneath opens rel beneath dir; symlinks may be followed only while
// they stay beneath it.
func openBeneath(dir, rel string, flags int) (*os.File, error) {
	dfd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(dfd, rel, &how)
	if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s leads outside the build context", rel)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}

func statBeneath(dir, rel string) (fs.FileInfo, error) {
	f, err := openBeneath(dir, rel, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// hashSources hashes the sources' names, types, modes and contents (not
// owners or times, which a context upload does not keep).
func hashSources(ctxDir string, srcs []string) (string, error) {
	h := sha256.New()
	for _, s := range srcs {
		fmt.Fprintf(h, "src %s\n", s)
		f, err := openBeneath(ctxDir, s, unix.O_RDONLY)
		if err != nil {
			return "", err
		}
		err = hashTree(h, f, ".")
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashTree(h io.Writer, f *os.File, rel string) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	fmt.Fprintf(h, "%s %o %d\n", rel, st.Mode(), st.Size())
	switch {
	case st.Mode().IsRegular():
		_, err := io.Copy(h, f)
		return err
	case st.IsDir():
		names, err := f.Readdirnames(-1)
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			fd, err := unix.Openat(int(f.Fd()), n, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			if errors.Is(err, unix.ELOOP) {
				target, lerr := readlinkAt(int(f.Fd()), n)
				if lerr != nil {
					return lerr
				}
				fmt.Fprintf(h, "%s/%s -> %s\n", rel, n, target)
				continue
			}
			if err != nil {
				return fmt.Errorf("%s/%s: %w", rel, n, err)
			}
			sub := os.NewFile(uintptr(fd), n)
			err = hashTree(h, sub, rel+"/"+n)
			sub.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func readlinkAt(dfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// rootDir opens the directory at abs inside the rootfs (as the sandbox
// resolves it), creating missing directories owned by uid:gid (sandbox
// ids; shift is added on disk).
func mkdirIn(rootfs, abs string, shift uint32, uid, gid int) error {
	fd, err := openDirIn(rootfs, abs, true, shift, uid, gid)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

func openDirIn(rootfs, abs string, create bool, shift uint32, uid, gid int) (int, error) {
	root, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(root)
	return openDirAt(root, strings.TrimPrefix(path.Clean(abs), "/"), create, shift, uid, gid)
}

func openDirAt(root int, rel string, create bool, shift uint32, uid, gid int) (int, error) {
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{Flags: unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(root, rel, &how)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) || rel == "." {
		if errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("/%s is not a directory", rel)
		}
		return fd, err
	}
	parent, base := path.Split(rel)
	pfd, err := openDirAt(root, path.Clean(parent), true, shift, uid, gid)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	if err := unix.Fchownat(pfd, base, uid+int(shift), gid+int(shift), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, err
	}
	return openDirAt(root, rel, false, shift, uid, gid)
}

// doCopy performs a planned COPY or ADD into the running step sandbox's
// rootfs.
func (r *run) doCopy(ctx context.Context, rootfs string, p *copyPlan) error {
	shift := r.b.store.IDShift
	uid, gid := 0, 0
	if p.chown != "" {
		var err error
		uid, gid, err = resolveOwner(rootfs, p.chown)
		if err != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "--chown=%s: %v", p.chown, err)
		}
		p.owner = &[2]int{uid, gid}
	}
	c := &copier{ctx: ctx, shift: shift, uid: uid, gid: gid, chmod: p.chmod}
	for _, s := range p.srcs {
		src, err := openBeneath(p.ctxDir, s, unix.O_RDONLY)
		if err != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "source %s: %v", s, err)
		}
		st, err := src.Stat()
		if err != nil {
			src.Close()
			return err
		}
		err = func() error {
			defer src.Close()
			if st.IsDir() {
				dfd, err := openDirIn(rootfs, p.dest, true, shift, uid, gid)
				if err != nil {
					return fmt.Errorf("destination %s: %w", p.dest, err)
				}
				defer unix.Close(dfd)
				return c.copyDirContents(src, dfd)
			}
			if p.add {
				if rd, ok, err := archiveReader(src); err != nil {
					return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "ADD %s: %v", s, err)
				} else if ok {
					dfd, err := openDirIn(rootfs, p.dest, true, shift, uid, gid)
					if err != nil {
						return fmt.Errorf("destination %s: %w", p.dest, err)
					}
					defer unix.Close(dfd)
					err = template.ExtractTar(ctx, dfd, rd, template.ExtractOptions{Shift: shift, Owner: p.owner})
					if err != nil {
						return fmt.Errorf("ADD %s: %w", s, err)
					}
					return nil
				}
			}
			dir, name := p.dest, path.Base(s)
			if !p.destDir {
				// An existing directory takes the file in; else dest is
				// the file's own path.
				if fd, err := openDirIn(rootfs, p.dest, false, shift, 0, 0); err == nil {
					unix.Close(fd)
				} else {
					dir, name = path.Dir(p.dest), path.Base(p.dest)
				}
			}
			dfd, err := openDirIn(rootfs, dir, true, shift, uid, gid)
			if err != nil {
				return fmt.Errorf("destination %s: %w", dir, err)
			}
			defer unix.Close(dfd)
			return c.copyEntry(src, st, dfd, name)
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

type copier struct {
	ctx      context.Context
	shift    uint32
	uid, gid int
	chmod    *uint32
}

func (c *copier) copyDirContents(src *os.File, dfd int) error {
	names, err := src.Readdirnames(-1)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		fd, err := unix.Openat(int(src.Fd()), n, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if errors.Is(err, unix.ELOOP) {
			target, err := readlinkAt(int(src.Fd()), n)
			if err != nil {
				return err
			}
			if err := replaceAt(dfd, n); err != nil {
				return err
			}
			if err := unix.Symlinkat(target, dfd, n); err != nil {
				return err
			}
			if err := unix.Fchownat(dfd, n, c.uid+int(c.shift), c.gid+int(c.shift), unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		sub := os.NewFile(uintptr(fd), n)
		st, err := sub.Stat()
		if err == nil {
			err = c.copyEntry(sub, st, dfd, n)
		}
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// copyEntry copies src (a file or directory) to name in directory dfd.
func (c *copier) copyEntry(src *os.File, st fs.FileInfo, dfd int, name string) error {
	mode := uint32(st.Mode().Perm())
	if st.Mode()&fs.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if st.Mode()&fs.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if st.Mode()&fs.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	if c.chmod != nil {
		mode = *c.chmod
	}
	huid, hgid := c.uid+int(c.shift), c.gid+int(c.shift)
	switch {
	case st.IsDir():
		var cur unix.Stat_t
		err := unix.Fstatat(dfd, name, &cur, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && cur.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := replaceAt(dfd, name); err != nil {
				return err
			}
			err = unix.ENOENT
		}
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		// Owner and mode through the directory's own fd: a name could
		// have become a symlink meanwhile; an fd opened O_NOFOLLOW cannot.
		sub, err := unix.Openat(dfd, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(sub)
		if err := unix.Fchown(sub, huid, hgid); err != nil {
			return err
		}
		if err := unix.Fchmod(sub, mode); err != nil {
			return err
		}
		return c.copyDirContents(src, sub)
	case st.Mode().IsRegular():
		if err := replaceAt(dfd, name); err != nil {
			return err
		}
		fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		out := os.NewFile(uintptr(fd), name)
		defer out.Close()
		if _, err := io.Copy(out, src); err != nil {
			return err
		}
		if err := unix.Fchown(fd, huid, hgid); err != nil {
			return err
		}
		if err := unix.Fchmod(fd, mode); err != nil {
			return err
		}
		mt := unix.NsecToTimespec(st.ModTime().UnixNano())
		return unix.UtimesNanoAt(dfd, name, []unix.Timespec{mt, mt}, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil // devices, FIFOs and sockets in a context are not copied
}

// replaceAt removes name in dfd unless it is a directory (which a file
// replaces only when empty, as in Docker; a non-empty one fails later).
func replaceAt(dfd int, name string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.EISDIR) {
		if err := unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR); err != nil {
			return fmt.Errorf("%s is a non-empty directory", name)
		}
		return nil
	}
	return err
}

// archiveReader returns a reader of the tar inside f when f is a tar
// archive, plain or compressed with gzip, bzip2 or zstd (ADD unpacks
// those); ok is false for any other file, which ADD copies as it is.
func archiveReader(f *os.File) (io.Reader, bool, error) {
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(512)
	var rd io.Reader
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, false, err
		}
		rd = z
	case bytes.HasPrefix(head, []byte("BZh")):
		rd = bzip2.NewReader(br)
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br)
		if err != nil {
			return nil, false, err
		}
		rd = z.IOReadCloser()
	default:
		if len(head) >= 262 && string(head[257:262]) == "ustar" {
			return br, true, nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, false, err
		}
		return nil, false, nil
	}
	// A compressed file is an archive only if a tar lies inside.
	inner := bufio.NewReaderSize(rd, 1024)
	h, _ := inner.Peek(512)
	if len(h) >= 262 && string(h[257:262]) == "ustar" {
		return inner, true, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, false, err
	}
	return nil, false, nil
}

// resolveOwner turns --chown's user[:group] into ids, looking names up in
// the rootfs's /etc/passwd and /etc/group.
func resolveOwner(rootfs, spec string) (int, int, error) {
	u, g, hasG := strings.Cut(spec, ":")
	uid, gid := -1, -1
	if n, err := strconv.Atoi(u); err == nil {
		uid = n
	} else {
		f, err := lookupColon(rootfs, "etc/passwd", u)
		if err != nil {
			return 0, 0, err
		}
		if f == nil {
			return 0, 0, fmt.Errorf("no user %q in the template's /etc/passwd", u)
		}
		uid, _ = strconv.Atoi(f[2])
		gid, _ = strconv.Atoi(f[3])
	}
	if hasG {
		if n, err := strconv.Atoi(g); err == nil {
			gid = n
		} else {
			f, err := lookupColon(rootfs, "etc/group", g)
			if err != nil {
				return 0, 0, err
			}
			if f == nil {
				return 0, 0, fmt.Errorf("no group %q in the template's /etc/group", g)
			}
			gid, _ = strconv.Atoi(f[2])
		}
	}
	if gid < 0 {
		gid = uid
	}
	if uid < 0 || gid < 0 || uid >= template.IDRange || gid >= template.IDRange {
		return 0, 0, fmt.Errorf("ids must be from 0 to %d", template.IDRange-1)
	}
	return uid, gid, nil
}

func lookupColon(rootfs, file, name string) ([]string, error) {
	root, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(root, file, &how)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", file, err)
	}
	f := os.NewFile(uintptr(fd), file)
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 4<<20))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 4 && fields[0] == name {
			return fields, nil
		}
	}
	return nil, sc.Err()
}
