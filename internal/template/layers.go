package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/units"
)

// Built templates.
//
// A template made by a build (sbx template build, E2B's Template.build) has
// no rootfs of its own: it is a stack of read-only layers, each the upper
// directory of one build step's sandbox, over the rootfs of the template it
// started from (Info.Base). Layers live in dir/.layers/<id>/fs, where the
// id is the build cache key of the step that made them, so a later build
// with the same step finds the layer and does not run the step again.
//
//	dir/.layers/<id>/fs      the layer's files (overlay whiteouts included)
//	dir/.layers/<id>/empty   present when the step changed nothing
//	dir/.layers/.tmp-*       a layer being written
//
// A layer is written under a temporary name and renamed into place, so a
// layer directory with its id is always complete. Layers are never
// modified. Removing a template deletes the layers no template lists any
// more, except those a build holds (a shared flock on the layer's
// directory, see LayerRef): a build never loses a layer it is using to a
// removal in this or another process.

const layersDir = ".layers"

var layerIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ValidateLayerID reports whether id can name a layer: 32 lowercase hex
// digits (128 bits of a SHA-256). Short, because a sandbox's overlay mount
// lists every layer's path in one page of mount options.
func ValidateLayerID(id string) error {
	if !layerIDRE.MatchString(id) {
		return fmt.Errorf("invalid layer id %q", id)
	}
	return nil
}

func (s *Store) layerDir(id string) string { return filepath.Join(s.dir, layersDir, id) }

// fillLayers sets info's RootfsPath and LayerPaths from what it stores.
func (s *Store) fillLayers(info *Info) error {
	if len(info.Stack) == 0 && info.Base == "" {
		info.RootfsPath = filepath.Join(s.dir, info.Name, rootfsDir)
		info.LayerPaths = []string{info.RootfsPath}
		return nil
	}
	info.LayerPaths = make([]string, 0, len(info.Stack)+1)
	for _, id := range info.Stack {
		if err := ValidateLayerID(id); err != nil {
			return fmt.Errorf("template %q: %w", info.Name, err)
		}
		info.LayerPaths = append(info.LayerPaths, filepath.Join(s.layerDir(id), "fs"))
	}
	if info.Base != "" {
		if err := ValidateName(info.Base); err != nil {
			return fmt.Errorf("template %q: base: %w", info.Name, err)
		}
		info.LayerPaths = append(info.LayerPaths, filepath.Join(s.dir, info.Base, rootfsDir))
	}
	return nil
}

// LayerRef is a layer held by a build. While it is held, no template
// removal deletes the layer. Release it when the build is over (the
// template it built, if any, then keeps the layer).
type LayerRef struct {
	// ID is the layer's id (its build cache key).
	ID string
	// Path is the host directory of the layer's files.
	Path string
	// Empty is true when the step that made it changed no file; builds
	// leave such layers out of a template's stack.
	Empty bool
	f     *os.File
}

// Release lets the layer be removed once no template lists it.
func (r *LayerRef) Release() {
	if r != nil && r.f != nil {
		r.f.Close() // closing drops the flock
		r.f = nil
	}
}

// holdDir opens dir and takes a shared flock on it.
func holdDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// PinLayer holds layer id if the store has it. A missing layer is
// errdefs.ErrNotFound.
func (s *Store) PinLayer(id string) (*LayerRef, error) {
	if err := ValidateLayerID(id); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "invalid layer id")
	}
	dir := s.layerDir(id)
	f, err := holdDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.Wrap(errdefs.ErrNotFound, err, "layer %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", id, err)
	}
	// A removal may have renamed it away between the open and the flock.
	var fst, pst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil || unix.Stat(dir, &pst) != nil || fst.Ino != pst.Ino {
		f.Close()
		return nil, errdefs.New(errdefs.ErrNotFound, "layer %s not found", id)
	}
	_, err = os.Lstat(filepath.Join(dir, "empty"))
	return &LayerRef{ID: id, Path: filepath.Join(dir, "fs"), Empty: err == nil, f: f}, nil
}

// newLayer makes a held temporary layer directory with an fs/ owned like
// a sandbox's root, returning it and the function that installs it as
// layer id (or, if another build installed the same id meanwhile, drops it
// and holds that one).
func (s *Store) newLayer(id string) (tmp string, hold *os.File, install func(empty bool) (*LayerRef, error), err error) {
	if err := ValidateLayerID(id); err != nil {
		return "", nil, nil, err
	}
	if err := os.MkdirAll(filepath.Join(s.dir, layersDir), 0o755); err != nil {
		return "", nil, nil, fmt.Errorf("layers dir: %w", err)
	}
	tmp = filepath.Join(s.dir, layersDir, ".tmp-"+strconv.Itoa(os.Getpid())+"-"+randSuffix())
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", nil, nil, fmt.Errorf("new layer: %w", err)
	}
	// Held from the start: a removal's sweep leaves held directories alone.
	hold, err = holdDir(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return "", nil, nil, fmt.Errorf("new layer: %w", err)
	}
	install = func(empty bool) (*LayerRef, error) {
		if empty {
			if err := writeFileSync(filepath.Join(tmp, "empty"), nil); err != nil {
				return nil, err
			}
		}
		syncTree(tmp)
		dst := s.layerDir(id)
		if err := os.Rename(tmp, dst); err != nil {
			hold.Close()
			os.RemoveAll(tmp)
			if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
				return s.PinLayer(id) // the same step, committed by another build
			}
			return nil, fmt.Errorf("install layer %s: %w", id, err)
		}
		return &LayerRef{ID: id, Path: filepath.Join(dst, "fs"), Empty: empty, f: hold}, nil
	}
	return tmp, hold, install, nil
}

// syncTree flushes a new layer to disk before it gets its name (a crash
// must not leave a named layer with missing files). One syncfs covers it.
func syncTree(dir string) {
	if fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		unix.Syncfs(fd)
		unix.Close(fd)
	}
}

// CommitLayer copies upper, the upper directory of a stopped sandbox's
// overlay, into the store as layer id, keeping overlay whiteouts (0/0
// character devices) and opaque directories (the trusted.overlay.opaque
// xattr) so that the layer hides what its step deleted from the layers
// below. Top-level names in skip (mount points the runtime made, such as
// ".sbx") are left out. It returns the layer held.
func (s *Store) CommitLayer(ctx context.Context, id, upper string, skip []string) (*LayerRef, error) {
	tmp, hold, install, err := s.newLayer(id)
	if err != nil {
		return nil, err
	}
	n, err := copyUpper(ctx, upper, filepath.Join(tmp, "fs"), skip)
	if err != nil {
		hold.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("commit layer: %w", err)
	}
	return install(n == 0)
}

// ImageConfig is what a build takes from an image's config.
type ImageConfig struct {
	Env        []string
	Workdir    string
	User       string // a user /etc/passwd in the image names, else "root"
	Entrypoint []string
	Cmd        []string
}

// ImportLayer flattens img into one layer with id (as Import does into a
// template's rootfs, with the same checks) and returns it held, with the
// image's config.
func (s *Store) ImportLayer(ctx context.Context, id string, img v1.Image, progress io.Writer) (*LayerRef, ImageConfig, error) {
	if progress == nil {
		progress = io.Discard
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, ImageConfig{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "image config: %v", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, ImageConfig{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "image layers: %v", err)
	}
	tmp, hold, install, err := s.newLayer(id)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	ok := false
	defer func() {
		if !ok {
			hold.Close()
			os.RemoveAll(tmp)
		}
	}()
	rootfs := filepath.Join(tmp, "fs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, ImageConfig{}, err
	}
	if err := os.Lchown(rootfs, int(s.IDShift), int(s.IDShift)); err != nil {
		return nil, ImageConfig{}, err
	}
	x, err := newExtractor(rootfs, s.IDShift, s.maxImportBytes(), progress)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	defer x.close()
	for i, l := range layers {
		d, _ := l.Digest()
		size, _ := l.Size()
		fmt.Fprintf(progress, "layer %d/%d %s (%s compressed)\n", i+1, len(layers), d, units.Bytes(size, units.IEC))
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, ImageConfig{}, errdefs.Wrap(errdefs.ErrUnavailable, err, "cannot read layer %s: %v", d, err)
		}
		err = x.applyLayer(ctx, rc)
		rc.Close()
		var classed *errdefs.Error
		if err != nil && !errors.As(err, &classed) && ctx.Err() == nil {
			return nil, ImageConfig{}, errdefs.Wrap(errdefs.ErrUnavailable, err, "layer %s could not be read: %v", d, err)
		}
		if err != nil {
			return nil, ImageConfig{}, fmt.Errorf("layer %s: %w", d, err)
		}
	}
	ic := ImageConfig{
		Env:        cfg.Config.Env,
		Workdir:    cfg.Config.WorkingDir,
		User:       x.imageUser(cfg.Config.User),
		Entrypoint: cfg.Config.Entrypoint,
		Cmd:        cfg.Config.Cmd,
	}
	ref, err := install(false)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	ok = true
	return ref, ic, nil
}

// InstallBuilt makes info (Stack, Base and the rest set by a build) the
// template info.Name (a name or a "name:tag" reference). A name that is
// taken by another built template is replaced (a rebuild); one taken by a
// template with its own rootfs is errdefs.ErrConflict. The caller holds every layer in info.Stack until it
// returns, and makes sure no sandbox uses a template it replaces.
//
// It does not publish the template to s.Remote: the caller does
// (Store.Publish), once it lets go of whatever it holds meanwhile.
func (s *Store) InstallBuilt(ctx context.Context, info Info) (Info, error) {
	name, err := CanonicalRef(info.Name)
	if err != nil {
		return Info{}, err
	}
	info.Name = name
	if len(info.Stack) == 0 && info.Base == "" {
		return Info{}, errdefs.New(errdefs.ErrInvalidArgument, "a built template needs layers")
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	if old, err := s.Get(info.Name); err == nil {
		if len(old.Stack) == 0 && old.Base == "" {
			return Info{}, errdefs.New(errdefs.ErrConflict, "template %q exists and was not built from steps; remove it first", info.Name)
		}
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return Info{}, err
	}
	var size int64
	if info.Base != "" {
		base, err := s.Get(info.Base)
		if err != nil {
			return Info{}, fmt.Errorf("base of %q: %w", info.Name, err)
		}
		size = base.SizeBytes // measured when it was made; its files never change
	}
	s.sweep()
	probe := info
	if err := s.fillLayers(&probe); err != nil {
		return Info{}, err
	}
	for _, p := range probe.LayerPaths[:len(info.Stack)] {
		n, err := dirSize(p)
		if err != nil {
			return Info{}, fmt.Errorf("size of template %q: %w", info.Name, err)
		}
		size += n
	}
	info.SizeBytes = size
	info.IDShift = s.IDShift
	if info.Created.IsZero() {
		info.Created = time.Now().UTC()
	}
	if err := s.writeMeta(info); err != nil {
		return Info{}, err
	}
	s.gcLayers(ctx) // a rebuild leaves the old stack's own layers unused
	s.logger.Info("template built", "template", info.Name, "layers", len(info.Stack), "base", info.Base)
	return s.Get(info.Name)
}

// checkNotBase refuses to remove a template that built templates stand on.
// The caller holds the lock.
func (s *Store) checkNotBase(ctx context.Context, name string) error {
	infos, err := s.listAll(ctx)
	if err != nil {
		return err
	}
	for _, in := range infos {
		if in.Base == name && in.Name != name {
			return errdefs.New(errdefs.ErrConflict, "template %q is the base of template %q; remove that first", name, in.Name)
		}
	}
	return nil
}

// gcLayers deletes the layers no template lists and no build holds, and
// temporary layers nobody writes any more. The caller holds the lock.
func (s *Store) gcLayers(ctx context.Context) {
	infos, err := s.listAll(ctx)
	if err != nil {
		s.logger.Error("layer gc: list templates", "err", err)
		return
	}
	used := map[string]bool{}
	for _, in := range infos {
		for _, id := range in.Stack {
			used[id] = true
		}
	}
	root := filepath.Join(s.dir, layersDir)
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if used[e.Name()] || !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // held by a build
			continue
		}
		trash := filepath.Join(root, ".trash-"+randSuffix())
		if err := os.Rename(dir, trash); err == nil {
			os.RemoveAll(trash)
			s.logger.Debug("layer removed", "layer", e.Name())
		}
		f.Close()
	}
}
