package sandbox

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// Volumes resolves the volumes sandboxes mount (package volume implements
// it). Mount may be called concurrently.
type Volumes interface {
	// Mount returns the host directory of volume id, mounted, for a box
	// to bind-mount; an unknown volume is errdefs.ErrNotFound.
	Mount(ctx context.Context, id string) (string, error)
}

// VolumeMount is a volume a create mounts: its id and the absolute path
// in the sandbox.
type VolumeMount = store.VolumeMount

// BoxMount is a host directory bind-mounted read-write into a box.
type BoxMount struct {
	// Source is the host directory; Destination the absolute path in
	// the box.
	Source, Destination string
}

// reservedMountPaths are paths a volume may not be mounted at or below:
// the box's kernel interfaces and devices, and sbx's own files.
var reservedMountPaths = []string{"/proc", "/sys", "/dev", "/.sbx"}

// maxVolumeMounts bounds the volumes of one sandbox.
const maxVolumeMounts = 16

// CheckMountPath checks a volume's mount path: absolute, clean, not the
// root and not in a reserved tree.
func CheckMountPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errdefs.New(errdefs.ErrInvalidArgument, "volume mount path %q must be absolute", p)
	}
	if strings.IndexByte(p, 0) >= 0 || len(p) > 1024 {
		return errdefs.New(errdefs.ErrInvalidArgument, "volume mount path is invalid")
	}
	if path.Clean(p) != p {
		return errdefs.New(errdefs.ErrInvalidArgument, "volume mount path %q is not clean (no '..', '.', '//' or trailing '/')", p)
	}
	if p == "/" {
		return errdefs.New(errdefs.ErrInvalidArgument, "a volume cannot be mounted at /")
	}
	for _, r := range reservedMountPaths {
		if p == r || strings.HasPrefix(p, r+"/") {
			return errdefs.New(errdefs.ErrInvalidArgument, "volume mount path %q is reserved (%s)", p, r)
		}
	}
	return nil
}

// checkVolumeMounts checks a create's volume mounts: valid paths, none
// twice or one inside another.
func checkVolumeMounts(mounts []VolumeMount) error {
	if len(mounts) > maxVolumeMounts {
		return errdefs.New(errdefs.ErrInvalidArgument, "at most %d volume mounts", maxVolumeMounts)
	}
	for i, a := range mounts {
		if err := CheckMountPath(a.Path); err != nil {
			return err
		}
		for _, b := range mounts[:i] {
			if a.Path == b.Path {
				return errdefs.New(errdefs.ErrInvalidArgument, "volume mount path %q is given twice", a.Path)
			}
			if strings.HasPrefix(a.Path, b.Path+"/") || strings.HasPrefix(b.Path, a.Path+"/") {
				return errdefs.New(errdefs.ErrInvalidArgument, "volume mount paths %q and %q nest", b.Path, a.Path)
			}
		}
	}
	return nil
}

// boxMounts resolves sandbox id's recorded volumes to bind mounts,
// mounting the volumes' disks where needed.
func (m *Manager) boxMounts(ctx context.Context, id string) ([]BoxMount, error) {
	mounts, err := m.db.SandboxVolumes(ctx, id)
	if err != nil || len(mounts) == 0 {
		return nil, err
	}
	if m.cfg.Volumes == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "this server has no volumes")
	}
	out := make([]BoxMount, 0, len(mounts))
	for _, vm := range mounts {
		src, err := m.cfg.Volumes.Mount(ctx, vm.VolumeID)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", vm.Name, err)
		}
		out = append(out, BoxMount{Source: src, Destination: vm.Path})
	}
	return out, nil
}

// All returns the volumes every sandbox mounts, by sandbox id.
func (v VolumeUse) All(ctx context.Context) (map[string][]VolumeMount, error) {
	return v.m.db.AllSandboxVolumes(ctx)
}

// Mounts returns the volumes sandbox id mounts.
func (v VolumeUse) Mounts(ctx context.Context, id string) ([]VolumeMount, error) {
	return v.m.volumeMounts(ctx, id)
}

// volumeMounts returns the volumes sandbox id mounts.
func (m *Manager) volumeMounts(ctx context.Context, id string) ([]VolumeMount, error) {
	return m.db.SandboxVolumes(ctx, id)
}
