package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// Retired bases. The base template is built when sbx serve starts, and
// sandboxes, snapshots and built templates stand on it. When this sbx's
// base spec differs from the one the installed base was built from (other
// packages or setup, as when an upgrade adds sudo), the old base cannot
// simply be removed (its users need its files: a paused sandbox's upper
// layer only makes sense over the lower layer it was made on) nor kept
// as "base" (new sandboxes would not get the new definition). So it is
// retired: renamed base.<hash>, with every user pointed at the new name,
// and a new base is built. A retired base stays until removed by hand
// (Store.RetiredBases lists them).

// retiredRE matches the names of retired bases (see RetiredName).
var retiredRE = regexp.MustCompile(`^` + regexp.QuoteMeta(BaseName) + `\.[0-9a-f]{12}$`)

// RetiredName is the name a base described by info is retired under:
// base.<12 hex digits>, a hash of its source and build time, the same on
// every call, so that a retirement interrupted halfway is finished under
// the same name by the next.
func RetiredName(info Info) string {
	h := sha256.Sum256([]byte(info.Source + "\x00" + info.Created.UTC().Format(time.RFC3339Nano)))
	return BaseName + "." + hex.EncodeToString(h[:6])
}

// IsRetiredBase reports whether name is the name of a retired base.
func IsRetiredBase(name string) bool { return retiredRE.MatchString(name) }

// BaseStale reports whether the installed base was built by sbx from
// another spec than this sbx's. A missing base, or one imported under the
// name (its source is not a debootstrap), is not stale.
func (s *Store) BaseStale() (Info, bool, error) {
	info, err := s.Get(BaseName)
	if errors.Is(err, errdefs.ErrNotFound) {
		return Info{}, false, nil
	}
	if err != nil {
		return Info{}, false, err
	}
	if !strings.HasPrefix(info.Source, "debootstrap ") {
		return info, false, nil
	}
	return info, info.Source != baseSpec().source(), nil
}

// Retarget is how RetireBase has the users of a base that the store does
// not know (sandbox and snapshot records) follow it to its new name: it
// points every user of template from at to, calls move, and points them
// back if move fails. No sandbox may be made from from meanwhile.
type Retarget func(ctx context.Context, from, to string, move func() error) error

// RetireBase retires a stale base (see BaseStale): under retarget, it
// points the templates and tags built on it at its retired name
// (RetiredName), then renames it. It returns the retired name, or "" when
// the base is not stale. The next EnsureBase builds a new base.
//
// A crash between the steps leaves users pointing at the retired name
// while the base still has its old one; the base is still stale, so the
// next RetireBase finishes the move under the same name.
func (s *Store) RetireBase(ctx context.Context, retarget Retarget) (string, error) {
	info, stale, err := s.BaseStale()
	if err != nil || !stale {
		return "", err
	}
	retired := RetiredName(info)
	if retarget == nil {
		retarget = func(ctx context.Context, from, to string, move func() error) error { return move() }
	}
	err = retarget(ctx, BaseName, retired, func() error { return s.moveBase(ctx, retired) })
	if err != nil {
		return "", fmt.Errorf("retire base template: %w", err)
	}
	s.logger.Info("retired out-of-date base template", "template", BaseName, "retired_as", retired, "source", info.Source)
	return retired, nil
}

// moveBase renames base to retired and points what is built on it there.
func (s *Store) moveBase(ctx context.Context, retired string) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Lstat(filepath.Join(s.dir, retired)); err == nil {
		return errdefs.New(errdefs.ErrConflict, "template %q exists", retired)
	}
	infos, err := s.listAll(ctx)
	if err != nil {
		return err
	}
	var moved []Info
	point := func(to string) error {
		for _, in := range moved {
			in.Base = to
			if err := s.writeMeta(in); err != nil {
				return fmt.Errorf("point %q at %q: %w", in.Name, to, err)
			}
		}
		return nil
	}
	for _, in := range infos {
		if in.Base == BaseName && in.Name != BaseName {
			in.RootfsPath, in.LayerPaths = "", nil
			moved = append(moved, in)
		}
	}
	err = point(retired)
	if err == nil {
		// Other servers sharing the bucket must not fetch the old base as
		// the new one; the new build is published in its place.
		err = s.unpublish(ctx, BaseName)
	}
	if err == nil {
		if err = os.Rename(filepath.Join(s.dir, BaseName), filepath.Join(s.dir, retired)); err != nil {
			err = fmt.Errorf("rename base template: %w", err)
		}
	}
	if err != nil {
		return errors.Join(err, point(BaseName))
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// RetiredBases lists the retired bases in the store.
func (s *Store) RetiredBases(ctx context.Context) ([]string, error) {
	infos, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, in := range infos {
		if IsRetiredBase(in.Name) {
			out = append(out, in.Name)
		}
	}
	return out, nil
}
