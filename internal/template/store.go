// Package template holds sbx's templates: read-only root filesystems that
// sandboxes start from, each with a little metadata.
//
// # Overview
//
// A [Store] keeps templates in one directory:
//
//	dir/<name>/rootfs     the root filesystem (an overlay lower layer)
//	dir/<name>/meta.json  the [Info] (name, creation time, size, defaults)
//	dir/<name>:<tag>/meta.json  a tag's build (see [Store.Tags]); <name>
//	                      itself is the name's default tag
//	dir/.lock             flock held while building or removing
//	dir/.cache            debootstrap's package cache
//
// A template appears atomically: it is built under dir/.build-* and renamed
// into place with its meta.json, so a directory with a meta.json is always
// complete. Templates are never modified in place.
//
// # Usage
//
//	s, err := template.NewStore("/var/lib/sbx/templates", logger)
//	err = s.EnsureBase(ctx, os.Stderr) // builds "base" once
//	info, err := s.Get("base")         // info.RootfsPath is the lower layer
package template

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// BaseName is the name of the template EnsureBase builds.
const BaseName = "base"

// Info describes one template.
type Info struct {
	// Name is the template's name ([a-z0-9][a-z0-9._-]{0,62}).
	Name string `json:"name"`
	// Created is when the template was built.
	Created time.Time `json:"created"`
	// SizeBytes is the apparent size of the rootfs's regular files.
	SizeBytes int64 `json:"sizeBytes"`
	// Defaults are what a sandbox made from this template gets unless the
	// caller says otherwise.
	Defaults Defaults `json:"defaults"`
	// IDShift is the offset of the ids that own the rootfs's files on disk
	// (see Store.IDShift).
	IDShift uint32 `json:"idShift"`
	// Env ("K=V") and Workdir are the defaults of every process in a
	// sandbox made from the template: Env under the sandbox's own envVars,
	// Workdir when a request names no working directory. An import records
	// the image's; Store.Set changes them.
	Env     []string `json:"env,omitempty"`
	Workdir string   `json:"workdir,omitempty"`
	// StartCmd (argv) runs in the background in every new sandbox, as the
	// default user with Env and Workdir, as a process tagged "start"; an
	// import records the image's entrypoint then command. ReadyCmd (a
	// shell command that must exit 0) and ReadyPort (a TCP port that must
	// accept connections inside the sandbox) are the ready check a create
	// waits for, up to ReadyTimeoutSeconds (0: the server's default). See
	// the sandbox package for the semantics.
	StartCmd            []string `json:"startCmd,omitempty"`
	ReadyCmd            string   `json:"readyCmd,omitempty"`
	ReadyPort           int      `json:"readyPort,omitempty"`
	ReadyTimeoutSeconds int      `json:"readyTimeout,omitempty"`
	// Source says where the template came from ("debootstrap bookworm",
	// an image reference or path); Layers are the image layers an import
	// flattened into the root filesystem, in order (none for built
	// templates).
	Source string  `json:"source,omitempty"`
	Layers []Layer `json:"layers,omitempty"`
	// Stack and Base make up a built template (see Store.InstallBuilt):
	// Stack lists its layers (ids of directories under dir/.layers),
	// uppermost first, and Base names the template whose own rootfs lies
	// beneath them ("" when the bottom layer is in Stack, as for a build
	// from an image). Both are empty for templates with a rootfs of their
	// own.
	Stack []string `json:"stack,omitempty"`
	Base  string   `json:"base,omitempty"`
	// BuildID is the id of the build that made the template (see
	// Info.ID for templates without one); Tagged is when a tag was given
	// to a build made under another tag (see Store.AssignTags).
	BuildID string    `json:"buildID,omitempty"`
	Tagged  time.Time `json:"tagged,omitzero"`
	// RootfsPath is the host path of the template's root filesystem. It is
	// not stored: the Store fills it in. Empty for built templates.
	RootfsPath string `json:"-"`
	// LayerPaths are the host paths of the template's read-only layers,
	// uppermost first, as a sandbox's overlay stacks them. Not stored.
	LayerPaths []string `json:"-"`
}

// Layer is one image layer a template was made from.
type Layer struct {
	// Digest is the layer's content digest ("sha256:...").
	Digest string `json:"digest"`
	// SizeBytes is its size as stored in the image (compressed).
	SizeBytes int64 `json:"sizeBytes"`
}

// Defaults are a template's runtime defaults.
type Defaults struct {
	// User is the user that commands run as unless the caller names one.
	User string `json:"defaultUser"`
	// CPUs is the CPU quota in cores; 0 leaves it to the server
	// (sbx serve --cpus).
	CPUs float64 `json:"cpuCount,omitempty"`
	// MemoryMB is the memory limit in MiB, swap included; 0 leaves it to
	// the server (sbx serve --memory-mb).
	//
	// Earlier versions wrote "cpus" and "memoryBytes" into every meta.json
	// whether or not anyone chose them (the base template recorded 1 CPU
	// and 512 MiB from an old default, overriding the server's flags).
	// Those keys are deliberately not read: a template carries limits only
	// when they were set explicitly, under these new keys.
	MemoryMB int64 `json:"memoryMB,omitempty"`
}

// Store is a directory of templates. Its methods are safe for concurrent use,
// also by several processes sharing one directory.
type Store struct {
	dir    string
	logger *slog.Logger

	// Mirror is the Debian mirror debootstrap uses. NewStore sets it to the
	// one this host's apt uses (http://deb.debian.org/debian if none).
	Mirror string
	// IDShift is added to the uid and gid of every template file, so that
	// sandboxes whose user namespace maps ids 0..IDRange-1 to
	// IDShift..IDShift+IDRange-1 see them owned as built. Zero stores files
	// as built (no user namespace).
	IDShift uint32
	// MaxImportBytes bounds the bytes of file content an image import may
	// write (see Store.Import); zero means DefaultMaxImportBytes.
	MaxImportBytes int64
	// Remote, when not nil, is the object storage this store shares
	// templates through with other servers (see Store.Publish and
	// Store.Fetch). Set it before first use.
	Remote Remote
}

const (
	metaFile   = "meta.json"
	rootfsDir  = "rootfs"
	lockFile   = ".lock"
	cacheDir   = ".cache"
	buildPrefx = ".build-"
	trashPrefx = ".trash-"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidateName returns an error of class errdefs.ErrInvalidArgument unless
// name is a valid template name. Names become path components, so anything
// that could escape the store directory (/, .., empty) is refused here.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid template name %q: want [a-z0-9][a-z0-9._-]{0,62}", name)
	}
	return nil
}

// NewStore returns a Store over dir, creating dir if needed. A nil logger
// discards logs.
func NewStore(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("template store %s: %w", dir, err)
	}
	// Root's only. Threat: a host user running a template's set-uid
	// files. The trees keep the ids of the sandboxes' user namespace (see
	// IDShift), so the set-uid files in them (Debian's su and passwd,
	// whatever an imported image or a sandbox-built layer brings) are
	// set-uid to the host uid that owns every sandbox's files; the store's
	// filesystem is not mounted nosuid. Sandboxes never need the path:
	// they see the trees through overlay mounts, which root makes and
	// which read the layers with root's credentials.
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("template store: %w", err)
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return nil, fmt.Errorf("template store: %w", err)
	}
	return &Store{dir: abs, logger: logger.With("component", "template"), Mirror: aptMirror()}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Get returns template name, a name or a "name:tag" reference (see
// ParseRef); Info.Name is the canonical reference. A missing template is a
// wrapped errdefs.ErrNotFound; a bad name errdefs.ErrInvalidArgument.
func (s *Store) Get(name string) (Info, error) {
	name, err := CanonicalRef(name)
	if err != nil {
		return Info{}, err
	}
	b, err := os.ReadFile(filepath.Join(s.dir, name, metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, errdefs.Wrap(errdefs.ErrNotFound, err, "template %q not found", name)
	}
	if err != nil {
		return Info{}, fmt.Errorf("template %q: %w", name, err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("template %q: bad %s: %w", name, metaFile, err)
	}
	info.Name = name
	if err := s.fillLayers(&info); err != nil {
		return Info{}, err
	}
	return info, nil
}

// List returns every complete template, sorted by name: each name's
// default tag (see Store.Tags for the others).
func (s *Store) List(ctx context.Context) ([]Info, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	var out []Info
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() || ValidateName(e.Name()) != nil {
			continue // .lock, .cache, .build-*, .trash-*
		}
		info, err := s.Get(e.Name())
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes template name, a name (its default tag) or a "name:tag"
// reference: that one tag's entry (see Store.Refs for all of a name's).
// The caller makes sure no sandbox uses it. The directory is first renamed
// aside, so a half-deleted template is never visible under its name.
// Removing a missing template is a wrapped errdefs.ErrNotFound.
func (s *Store) Remove(ctx context.Context, name string) error {
	name, err := CanonicalRef(name)
	if err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	src := filepath.Join(s.dir, name)
	if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
		return errdefs.Wrap(errdefs.ErrNotFound, err, "template %q not found", name)
	}
	if err := s.checkNotBase(ctx, name); err != nil {
		return err
	}
	if err := s.unpublish(ctx, name); err != nil {
		return err
	}
	trash := filepath.Join(s.dir, trashPrefx+strings.ReplaceAll(name, ":", "-")+"-"+randSuffix())
	if err := os.Rename(src, trash); err != nil {
		return fmt.Errorf("remove template %q: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove template %q: %w", name, err)
	}
	s.gcLayers(ctx)
	s.logger.Info("template removed", "template", name)
	return nil
}

// lock takes the store's flock, waiting for another process (or Store) to
// release it, until ctx is done. It returns the function that releases it.
func (s *Store) lock(ctx context.Context) (func(), error) { return s.lockNamed(ctx, lockFile) }

// install moves a finished build (a dir holding rootfs/) into place as
// template name, writing its meta.json last-but-atomically: the rename is
// what makes the template visible.
func (s *Store) install(build string, info Info) error {
	size, err := dirSize(filepath.Join(build, rootfsDir))
	if err != nil {
		return fmt.Errorf("size of template %q: %w", info.Name, err)
	}
	info.SizeBytes = size
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(build, metaFile), append(b, '\n')); err != nil {
		return fmt.Errorf("template %q: %w", info.Name, err)
	}
	dst := filepath.Join(s.dir, info.Name)
	if err := os.Rename(build, dst); err != nil {
		return fmt.Errorf("install template %q: %w", info.Name, err)
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// sweep removes what interrupted builds and removals left behind. The caller
// holds the lock, so none of it is in use.
func (s *Store) sweep() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if len(n) > len(buildPrefx) && n[:len(buildPrefx)] == buildPrefx ||
			len(n) > len(trashPrefx) && n[:len(trashPrefx)] == trashPrefx ||
			// A pack in progress keeps its open file when the name goes.
			len(n) > len(packPrefx) && n[:len(packPrefx)] == packPrefx {
			s.logger.Info("removing leftover", "path", n)
			os.RemoveAll(filepath.Join(s.dir, n))
		}
	}
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// dirSize sums the sizes of the regular files under root, counting each
// hard-linked inode once.
func dirSize(root string) (int64, error) {
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	var total int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		k := ino{uint64(st.Dev), st.Ino}
		if st.Nlink > 1 {
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Size
		return nil
	})
	return total, err
}

func randSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
