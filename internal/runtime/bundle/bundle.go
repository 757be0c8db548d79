// Package bundle builds what an OCI runtime needs to start a box: the
// runtime spec (spec.go, where every security decision is written down with
// the threat it answers) and safe preparation of the box's rootfs. The runc
// and runsc drivers share it, so both runtimes start boxes with the same
// posture.
package bundle

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// idRE bounds box ids: they become path components of the runtime's state
// dir and of the cgroup path, so nothing that could traverse is accepted.
var idRE = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// ValidID reports whether id is acceptable as a box id.
func ValidID(id string) bool { return idRE.MatchString(id) }

// Validate checks the parts of a BoxSpec every driver relies on: an id
// that is safe as a path component, absolute paths, an agent listener.
func Validate(s sandbox.BoxSpec) error {
	var bad []string
	if !ValidID(s.ID) {
		bad = append(bad, fmt.Sprintf("id %q", s.ID))
	}
	for name, p := range map[string]string{"rootfs": s.Rootfs, "bundle dir": s.BundleDir, "agent path": s.AgentPath} {
		if !filepath.IsAbs(p) {
			bad = append(bad, fmt.Sprintf("%s %q is not absolute", name, p))
		}
	}
	if s.AgentListener == nil {
		bad = append(bad, "no agent listener")
	}
	for _, v := range s.Volumes {
		if !filepath.IsAbs(v.Source) || !filepath.IsAbs(v.Destination) || filepath.Clean(v.Destination) == "/" {
			bad = append(bad, fmt.Sprintf("volume mount %q on %q", v.Source, v.Destination))
		}
	}
	if len(bad) > 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "box spec: %s", strings.Join(bad, "; "))
	}
	return nil
}

// EnsureMountpoint creates an empty file at path (and its parent
// directories) inside rootfs, for a bind mount of a file.
//
// EnsureMountDir does the same for a directory.
//
// The rootfs is untrusted: a box may have left symlinks anywhere in its
// upper layer (say /.sbx -> /etc on the host). Every component is therefore
// created and opened relative to the rootfs with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS), so nothing is ever created or opened outside it;
// a symlink on the way is an error, not something to follow.
func EnsureMountpoint(rootfs, path string) error { return ensureMount(rootfs, path, false) }

// EnsureMountDir creates the directory path (and its parents) inside rootfs,
// for a bind mount of a directory; see EnsureMountpoint.
func EnsureMountDir(rootfs, path string) error { return ensureMount(rootfs, path, true) }

func ensureMount(rootfs, path string, isDir bool) error {
	dir, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: rootfs, Err: err}
	}
	parts := strings.Split(strings.Trim(filepath.Clean(path), "/"), "/")
	for i, name := range parts {
		last := i == len(parts)-1 && !isDir
		var fd int
		if last {
			fd, err = unix.Openat2(dir, name, &unix.OpenHow{
				Flags:   unix.O_RDONLY | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
				Mode:    0o755,
				Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
			})
		} else {
			if err := unix.Mkdirat(dir, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(dir)
				return &fs.PathError{Op: "mkdir", Path: filepath.Join(rootfs, filepath.Join(parts[:i+1]...)), Err: err}
			}
			fd, err = unix.Openat2(dir, name, &unix.OpenHow{
				Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
				Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
			})
		}
		unix.Close(dir)
		if err != nil {
			return &fs.PathError{Op: "open", Path: filepath.Join(rootfs, filepath.Join(parts[:i+1]...)), Err: err}
		}
		dir = fd
	}
	defer unix.Close(dir)
	var st unix.Stat_t
	if err := unix.Fstat(dir, &st); err != nil {
		return err
	}
	if want := uint32(unix.S_IFREG); isDir && st.Mode&unix.S_IFMT != unix.S_IFDIR || !isDir && st.Mode&unix.S_IFMT != want {
		return fmt.Errorf("%s in rootfs is not a %s", path, map[bool]string{true: "directory", false: "regular file"}[isDir])
	}
	return nil
}

// EnsureVolumeDirs creates the mount points of spec's volumes in its
// rootfs (see EnsureMountpoint: a symlink the box left on the way is an
// error, so a volume is never mounted over a host path).
func EnsureVolumeDirs(spec sandbox.BoxSpec) error {
	for _, v := range spec.Volumes {
		if err := EnsureMountDir(spec.Rootfs, v.Destination); err != nil {
			return fmt.Errorf("volume mount point %s: %w", v.Destination, err)
		}
	}
	return nil
}

// NofileLimit is the RLIMIT_NOFILE a box can be given: MaxNofile, or, when
// this process lacks CAP_SYS_RESOURCE and so the runtime cannot raise a hard limit,
// this process's hard limit if that is lower.
func NofileLimit() uint64 {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err == nil && caps[0].Effective&(1<<unix.CAP_SYS_RESOURCE) != 0 {
		return MaxNofile
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Max > MaxNofile {
		return MaxNofile
	}
	return rl.Max
}

// LogTail returns the last lines written to the box's log (where the runtime
// writes its errors) since offset, for an error message.
func LogTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > 2048 {
		offset = fi.Size() - 2048
	}
	b, err := io.ReadAll(io.NewSectionReader(f, offset, 2048))
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return ": " + strings.Join(lines, " | ")
}
