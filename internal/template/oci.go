package template

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/units"
)

// DefaultMaxImportBytes is the default bound on the file content an image
// import may write (Store.MaxImportBytes).
const DefaultMaxImportBytes int64 = 20 << 30

// OCI/Docker whiteout markers: a layer entry ".wh.NAME" deletes NAME from
// the layers below; ".wh..wh..opq" in a directory hides everything the
// layers below put there.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Import makes template name from img: its layers flattened in order into a
// new root filesystem, and its config's environment, working directory,
// start command and user recorded in the Info. It writes a line per layer
// (and a warning per skipped entry) to progress, which may be nil.
//
// The layers come from whoever built the image, so every entry is treated
// as hostile: an entry that would land outside the rootfs (absolute, "..",
// or through a symlink an earlier entry made) fails the import; device
// nodes and FIFOs are skipped (the runtime provides /dev); ids must lie in
// 0..IDRange-1 and are stored shifted by s.IDShift; the file content written
// is bounded by s.MaxImportBytes (errdefs.ErrTooLarge beyond it).
//
// The template appears atomically under the store's lock, like EnsureBase's;
// an existing name is errdefs.ErrConflict.
func (s *Store) Import(ctx context.Context, name string, img v1.Image, progress io.Writer) (Info, error) {
	return s.ImportWith(ctx, name, img, ImportOptions{}, progress)
}

// ImportOptions are what an import records beyond the image.
type ImportOptions struct {
	// Source describes where the image came from (a reference, a path),
	// shown by inspect.
	Source string
	// Settings are applied over what the image's config says, before the
	// template appears (so no sandbox ever starts without them).
	Settings Settings
}

// ImportWith is Import with options.
func (s *Store) ImportWith(ctx context.Context, name string, img v1.Image, opts ImportOptions, progress io.Writer) (Info, error) {
	info, err := s.importWith(ctx, name, img, opts, progress)
	if err == nil {
		s.publishMade(ctx, name)
	}
	return info, err
}

func (s *Store) importWith(ctx context.Context, name string, img v1.Image, opts ImportOptions, progress io.Writer) (Info, error) {
	if progress == nil {
		progress = io.Discard
	}
	if err := ValidateName(name); err != nil {
		return Info{}, err
	}
	if _, err := s.Get(name); err == nil {
		return Info{}, errdefs.New(errdefs.ErrConflict, "template %q already exists", name)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return Info{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "image config: %v", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return Info{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "image layers: %v", err)
	}

	unlock, err := s.lock(ctx)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	if _, err := s.Get(name); err == nil {
		return Info{}, errdefs.New(errdefs.ErrConflict, "template %q already exists", name)
	}
	s.sweep()

	build := filepath.Join(s.dir, buildPrefx+name+"-"+randSuffix())
	if err := os.Mkdir(build, 0o755); err != nil {
		return Info{}, fmt.Errorf("import template %q: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(build)
		}
	}()
	rootfs := filepath.Join(build, rootfsDir)
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return Info{}, fmt.Errorf("import template %q: %w", name, err)
	}
	if err := os.Lchown(rootfs, int(s.IDShift), int(s.IDShift)); err != nil {
		return Info{}, fmt.Errorf("import template %q: %w", name, err)
	}

	x, err := newExtractor(rootfs, s.IDShift, s.maxImportBytes(), progress)
	if err != nil {
		return Info{}, fmt.Errorf("import template %q: %w", name, err)
	}
	defer x.close()
	start := time.Now()
	var recorded []Layer
	for i, l := range layers {
		d, _ := l.Digest()
		size, _ := l.Size()
		recorded = append(recorded, Layer{Digest: d.String(), SizeBytes: size})
		fmt.Fprintf(progress, "layer %d/%d %s (%s compressed)\n", i+1, len(layers), d, units.Bytes(size, units.IEC))
		rc, err := l.Uncompressed()
		if err != nil {
			// Fetching the layer failed (a registry or the disk).
			return Info{}, errdefs.Wrap(errdefs.ErrUnavailable, err, "import template %q: cannot read layer %s: %v", name, d, err)
		}
		err = x.applyLayer(ctx, rc)
		rc.Close()
		var classed *errdefs.Error
		if err != nil && !errors.As(err, &classed) && ctx.Err() == nil {
			// Not one of the extractor's refusals: the stream itself
			// broke (truncated or corrupt archive, a registry dropping
			// the download).
			return Info{}, errdefs.Wrap(errdefs.ErrUnavailable, err, "import template %q: layer %s could not be read: %v", name, d, err)
		}
		if err != nil {
			return Info{}, fmt.Errorf("import template %q: layer %s: %w", name, d, err)
		}
	}

	info := Info{
		Name:     name,
		Created:  time.Now().UTC(),
		Defaults: Defaults{User: x.imageUser(cfg.Config.User)},
		IDShift:  s.IDShift,
		Env:      cfg.Config.Env,
		Workdir:  cfg.Config.WorkingDir,
		StartCmd: append(append([]string(nil), cfg.Config.Entrypoint...), cfg.Config.Cmd...),
		Source:   opts.Source,
		Layers:   recorded,
	}
	if info, err = opts.Settings.Apply(info); err != nil {
		return Info{}, err
	}
	if err := s.install(build, info); err != nil {
		return Info{}, err
	}
	ok = true
	s.logger.Info("template imported", "template", name, "layers", len(layers), "took", time.Since(start).Round(time.Millisecond))
	return s.Get(name)
}

func (s *Store) maxImportBytes() int64 {
	if s.MaxImportBytes > 0 {
		return s.MaxImportBytes
	}
	return DefaultMaxImportBytes
}

// extractor writes layers into one rootfs. Every path is resolved by the
// kernel beneath the rootfs's fd with symlinks refused (openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) and the last component is handled
// with *at calls that do not follow it: a layer that plants a symlink and
// then writes "through" it fails instead of writing on the host.
type extractor struct {
	root     int // O_DIRECTORY fd of the rootfs
	shift    uint32
	max      int64
	written  int64
	progress io.Writer
	// seen holds the paths the current layer has written, which an opaque
	// whiteout in the same layer must keep.
	seen map[string]bool
	// plain extracts an ordinary archive: ".wh." names are files like any
	// other (see ExtractTar).
	plain bool
	// ignoreOwners stores every entry as owned by owner (shifted).
	ignoreOwners bool
	owner        [2]int
}

type dirTime struct {
	path  string
	mtime time.Time
}

func newExtractor(rootfs string, shift uint32, max int64, progress io.Writer) (*extractor, error) {
	fd, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", rootfs, err)
	}
	return &extractor{root: fd, shift: shift, max: max, progress: progress}, nil
}

func (x *extractor) close() { unix.Close(x.root) }

// entryPath cleans a layer entry's name to a path relative to the rootfs
// ("." for the root itself), refusing absolute names and any "..".
func entryPath(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "entry %q: absolute path", name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", errdefs.New(errdefs.ErrInvalidArgument, "entry %q: path contains \"..\"", name)
		}
	}
	return path.Clean(name), nil
}

func (x *extractor) applyLayer(ctx context.Context, r io.Reader) error {
	x.seen = map[string]bool{}
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
			return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "bad layer tar: %v", err)
		}
		rel, err := entryPath(hdr.Name)
		if err != nil {
			return err
		}
		if rel == "." {
			continue // the rootfs itself keeps the store's owner and mode
		}
		isDir, err := x.apply(tr, hdr, rel)
		if err != nil {
			return err
		}
		x.seen[rel] = true
		if isDir {
			dirs = append(dirs, dirTime{rel, hdr.ModTime})
		}
	}
	// Directory mtimes last, deepest first: writing their entries changed
	// them.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := x.withParent(d.path, false, func(dfd int, base string) error {
			ts := []unix.Timespec{unix.NsecToTimespec(d.mtime.UnixNano()), unix.NsecToTimespec(d.mtime.UnixNano())}
			return unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
		}); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("entry %q: %w", d.path, err)
		}
	}
	return nil
}

// apply writes one entry at rel; it reports whether it made a directory.
func (x *extractor) apply(tr *tar.Reader, hdr *tar.Header, rel string) (bool, error) {
	dir, base := path.Split(rel)
	if !x.plain && base == whiteoutOpaque {
		return false, x.withParent(rel, false, func(dfd int, _ string) error {
			return x.opaque(dfd, path.Clean(dir))
		})
	}
	if !x.plain && strings.HasPrefix(base, whiteoutPrefix) {
		target := path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))
		err := x.withParent(target, false, func(dfd int, b string) error {
			return removeAt(dfd, b)
		})
		if errors.Is(err, unix.ENOENT) {
			return false, nil // whiting out what is not there
		}
		return false, wrapEntry(hdr.Name, err)
	}

	uid, gid := hdr.Uid, hdr.Gid
	if x.ignoreOwners {
		uid, gid = x.owner[0], x.owner[1]
	}
	if uid < 0 || gid < 0 || uid >= IDRange || gid >= IDRange {
		return false, errdefs.New(errdefs.ErrInvalidArgument, "entry %q: owner %d:%d outside 0..%d", hdr.Name, uid, gid, IDRange-1)
	}
	huid, hgid := uid+int(x.shift), gid+int(x.shift)
	mode := uint32(hdr.Mode) & 0o7777
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}

	switch hdr.Typeflag {
	case tar.TypeDir:
		return true, wrapEntry(hdr.Name, x.withParent(rel, true, func(dfd int, b string) error {
			var st unix.Stat_t
			err := unix.Fstatat(dfd, b, &st, unix.AT_SYMLINK_NOFOLLOW)
			if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				if err := removeAt(dfd, b); err != nil {
					return err
				}
				err = unix.ENOENT
			}
			if errors.Is(err, unix.ENOENT) {
				err = unix.Mkdirat(dfd, b, 0o700)
			}
			if err != nil {
				return err
			}
			if err := unix.Fchownat(dfd, b, huid, hgid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			return unix.Fchmodat(dfd, b, mode, 0) // b is a directory we just checked or made
		}))
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size > x.max-x.written {
			return false, errdefs.New(errdefs.ErrTooLarge, "entry %q: the image expands beyond the import limit of %s", hdr.Name, units.Bytes(x.max, units.IEC))
		}
		return false, wrapEntry(hdr.Name, x.withParent(rel, true, func(dfd int, b string) error {
			if err := removeAt(dfd, b); err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
			fd, err := unix.Openat(dfd, b, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err != nil {
				return err
			}
			f := os.NewFile(uintptr(fd), b)
			defer f.Close()
			n, err := io.Copy(f, io.LimitReader(tr, hdr.Size))
			x.written += n
			if err != nil {
				return err
			}
			// chown before chmod: chown clears set-id bits.
			if err := unix.Fchown(fd, huid, hgid); err != nil {
				return err
			}
			if err := unix.Fchmod(fd, mode); err != nil {
				return err
			}
			return unix.UtimesNanoAt(dfd, b, ts, unix.AT_SYMLINK_NOFOLLOW)
		}))
	case tar.TypeSymlink:
		return false, wrapEntry(hdr.Name, x.withParent(rel, true, func(dfd int, b string) error {
			if err := removeAt(dfd, b); err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
			// The target is stored as written and never followed here; it is
			// resolved inside the sandbox, against the sandbox's root.
			if err := unix.Symlinkat(hdr.Linkname, dfd, b); err != nil {
				return err
			}
			if err := unix.Fchownat(dfd, b, huid, hgid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			return unix.UtimesNanoAt(dfd, b, ts, unix.AT_SYMLINK_NOFOLLOW)
		}))
	case tar.TypeLink:
		target, err := entryPath(hdr.Linkname)
		if err != nil || target == "." {
			return false, errdefs.New(errdefs.ErrInvalidArgument, "entry %q: hard link to %q outside the image", hdr.Name, hdr.Linkname)
		}
		return false, wrapEntry(hdr.Name, x.withParent(target, false, func(tfd int, tb string) error {
			return x.withParent(rel, true, func(dfd int, b string) error {
				if err := removeAt(dfd, b); err != nil && !errors.Is(err, unix.ENOENT) {
					return err
				}
				// No AT_SYMLINK_FOLLOW: a link to a symlink links the
				// symlink itself, as tar means it.
				return unix.Linkat(tfd, tb, dfd, b, 0)
			})
		}))
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		fmt.Fprintf(x.progress, "warning: skipping %s: device nodes and FIFOs are not imported (the sandbox runtime provides /dev)\n", hdr.Name)
		return false, nil
	case tar.TypeXGlobalHeader:
		return false, nil
	default:
		return false, errdefs.New(errdefs.ErrInvalidArgument, "entry %q: unsupported tar entry type %q", hdr.Name, hdr.Typeflag)
	}
}

// withParent opens the directory holding rel beneath the rootfs, with no
// symlink anywhere on the way, and calls fn with its fd and rel's last
// component. With create, missing parents are made (root-owned, 0755).
func (x *extractor) withParent(rel string, create bool, fn func(dfd int, base string) error) error {
	dir, base := path.Split(rel)
	dir = path.Clean(dir)
	dfd, err := x.openDir(dir, create)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return fn(dfd, base)
}

func (x *extractor) openDir(dir string, create bool) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(x.root, dir, &how)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) || dir == "." {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return -1, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%s: passes through a symlink or leaves the image", dir)
		}
		return fd, err
	}
	parent, base := path.Split(dir)
	pfd, err := x.openDir(path.Clean(parent), true)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	if err := unix.Fchownat(pfd, base, int(x.shift), int(x.shift), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, err
	}
	return x.openDir(dir, false)
}

// opaque empties directory dir, open as dfd, of everything the layers
// below put there (what this layer wrote stays).
func (x *extractor) opaque(dfd int, dir string) error {
	nfd, err := unix.FcntlInt(uintptr(dfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(nfd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		if x.seen[path.Join(dir, n)] {
			continue
		}
		if err := removeAt(dfd, n); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}

// removeAt removes name in directory dfd, a whole tree if it is a
// directory, never following symlinks.
func removeAt(dfd int, name string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	sub, err := unix.Openat(dfd, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(sub), name)
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		return err
	}
	for _, n := range names {
		if err := removeAt(sub, n); err != nil && !errors.Is(err, unix.ENOENT) {
			f.Close()
			return err
		}
	}
	f.Close()
	return unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
}

func wrapEntry(name string, err error) error {
	if err == nil {
		return nil
	}
	var e *errdefs.Error
	if errors.As(err, &e) {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "entry %q: passes through a symlink or leaves the image", name)
	}
	if errors.Is(err, unix.ENOENT) {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "entry %q: refers to a path not in the image", name)
	}
	return fmt.Errorf("entry %q: %w", name, err)
}

// imageUser returns the template's default user for an image config's
// User ("name", "uid", "name:group"...): the name when the image's
// /etc/passwd has it (by name or uid), else "root".
func (x *extractor) imageUser(user string) string {
	u, _, _ := strings.Cut(user, ":")
	if u == "" {
		return "root"
	}
	var name string
	_ = x.withParent("etc/passwd", false, func(dfd int, b string) error {
		fd, err := unix.Openat(dfd, b, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), b)
		defer f.Close()
		sc := bufio.NewScanner(io.LimitReader(f, 4<<20))
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) < 3 {
				continue
			}
			if _, err := strconv.Atoi(u); err == nil && fields[2] == u || fields[0] == u {
				name = fields[0]
				return nil
			}
		}
		return nil
	})
	if name == "" {
		return "root"
	}
	return name
}
