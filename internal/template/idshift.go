package template

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// IDRange is the number of user and group ids a template's files may use:
// ids 0..IDRange-1 inside a sandbox, stored on disk shifted by the store's
// IDShift so that a sandbox's user namespace maps them back.
const IDRange = 65536

// EnsureShifted makes every template's files owned by ids shifted by the
// store's IDShift, rewriting the ownership of templates stored with another
// shift (built before user namespaces, say). It holds the store's lock while
// it works and must run before sandboxes use the templates.
func (s *Store) EnsureShifted(ctx context.Context) error {
	infos, err := s.List(ctx)
	if err != nil {
		return err
	}
	for _, in := range infos {
		if in.IDShift == s.IDShift {
			continue
		}
		unlock, err := s.lock(ctx)
		if err != nil {
			return err
		}
		err = s.reshift(ctx, in.Name)
		unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) reshift(ctx context.Context, name string) error {
	info, err := s.Get(name) // re-read under the lock
	if err != nil || info.IDShift == s.IDShift {
		return err
	}
	s.logger.Info("re-owning template files for the sandbox id range", "template", name, "from", info.IDShift, "to", s.IDShift)
	roots := info.LayerPaths // a built template's layers, its base's rootfs too
	if info.RootfsPath != "" {
		roots = []string{info.RootfsPath}
	}
	for _, root := range roots {
		if err := shiftTree(ctx, root, info.IDShift, s.IDShift); err != nil {
			return fmt.Errorf("template %q: %w", name, err)
		}
	}
	info.IDShift = s.IDShift
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	meta := filepath.Join(s.dir, name, metaFile)
	tmp := meta + ".tmp"
	if err := writeFileSync(tmp, append(b, '\n')); err != nil {
		return err
	}
	return os.Rename(tmp, meta)
}

// shiftTree changes the owner of every file under root from ids based at
// from to ids based at to, keeping modes (chown clears set-id bits). Files
// already in the target range are left alone, which covers hard links met
// twice and a shift interrupted halfway; other ids outside the source range
// are refused rather than guessed.
func shiftTree(ctx context.Context, root string, from, to uint32) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if inRange(st.Uid, to) && inRange(st.Gid, to) {
			return nil
		}
		uid, gid := st.Uid-from, st.Gid-from
		if st.Uid < from || st.Gid < from || uid >= IDRange || gid >= IDRange {
			return fmt.Errorf("%s is owned by %d:%d, outside the template id range", p, st.Uid, st.Gid)
		}
		if err := unix.Lchown(p, int(uid+to), int(gid+to)); err != nil {
			return err
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFLNK && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			if err := unix.Chmod(p, st.Mode&07777); err != nil {
				return err
			}
		}
		return nil
	})
}

func inRange(id, base uint32) bool { return id >= base && id-base < IDRange }
