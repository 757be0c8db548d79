package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sbxdev/sbx/internal/disk"
	"golang.org/x/sys/unix"
)

// mountRootfs assembles a sandbox's root filesystem at dir/rootfs: an
// overlayfs whose lower layers are the template's read-only directories
// (shared by every sandbox of the template, never written) and whose upper
// layer (upper, with its work directory work on the same filesystem: the
// sandbox's own disk when it has a quota) holds everything this sandbox
// changes. Killing the sandbox drops the upper layer; the template is
// untouched.
//
// With an id map, the upper layer's root is owned by the box's root (the
// merged root directory takes its owner from it), so root in the box owns /.
func mountRootfs(dir, upper, work string, layers []string, idmap *IDMap) (string, error) {
	if len(layers) == 0 {
		return "", errors.New("template has no layers")
	}
	rootfs := filepath.Join(dir, "rootfs")
	// Also for directories an older sbx made open to everyone.
	if err := closeBoxDir(dir, idmap); err != nil {
		return "", err
	}
	for _, d := range []string{upper, work, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("create %s: %w", d, err)
		}
	}
	if mounted(rootfs) {
		return rootfs, nil // re-adopted after a restart
	}
	if idmap != nil {
		if err := os.Lchown(upper, int(idmap.HostID), int(idmap.HostID)); err != nil {
			return "", fmt.Errorf("own upper layer: %w", err)
		}
	}
	for _, l := range layers {
		if strings.ContainsAny(l, ",:") {
			return "", fmt.Errorf("layer path %q cannot be used in overlay options", l)
		}
	}
	// index=off and xino=off keep the upper layer portable between mounts;
	// nfs_export is not needed. The lower layers are only ever read.
	//
	// nodev: device nodes in the layers reach no host device. Not nosuid:
	// set-uid programs (the base template's sudo) work in the box, as on
	// E2B; what they can grant is bounded by the box's user namespace and
	// capabilities (package bundle). From the host the mount is closed
	// by dir (closeBoxDir); without an id map the runtime keeps
	// no_new_privs, so set-uid bits stay inert.
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,index=off,xino=off", strings.Join(layers, ":"), upper, work)
	if err := unix.Mount("overlay", rootfs, "overlay", unix.MS_NODEV, opts); err != nil {
		return "", fmt.Errorf("mount overlay rootfs: %w", err)
	}
	return rootfs, nil
}

// closeBoxDir makes dir, a directory holding a box's files (its upper
// layer, its mounted root filesystem, a snapshot's layer), root's and the
// box's: owner root, group the box's mapped root (idmap.HostID), mode
// 0710. Threat: a host user running a set-uid file the box made. Root in
// the box may make any of its files set-uid, owned by the box's host uid,
// and the host filesystem honours the bit; such a file would make a host
// user that uid, the owner of every box's files. Only root and the box's
// own ids (its init resolves its rootfs path as the mapped root) may pass
// dir. Without an id map the box's init is the host's root: 0700.
func closeBoxDir(dir string, idmap *IDMap) error {
	gid, mode := 0, os.FileMode(0o700)
	if idmap != nil {
		gid, mode = int(idmap.HostID), 0o710
	}
	if err := os.Lchown(dir, 0, gid); err != nil {
		return fmt.Errorf("own %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("own %s: %w", dir, err)
	}
	return nil
}

// unmountRootfs detaches dir/rootfs and then the sandbox's disk, if they
// are mounted. It succeeds only when nothing is mounted there afterwards, so
// the caller may remove dir.
func unmountRootfs(dir string) error {
	if err := unmountAll(filepath.Join(dir, "rootfs")); err != nil {
		return err
	}
	if err := unmountAll(filepath.Join(dir, agentSocketDir)); err != nil {
		return err
	}
	return unmountAll(filepath.Join(dir, disk.MountDir))
}

// mounted reports whether path is a mount point.
func mounted(path string) bool { return disk.Mounted(path) }

// unmountAll detaches whatever is mounted on path, however many times.
func unmountAll(path string) error { return disk.UnmountAll(path) }
