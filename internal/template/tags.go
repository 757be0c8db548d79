package template

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// Tags: a template name stands for several builds, one per tag, as E2B's
// "name:tag" does. The default tag's build is the template directory of
// the name itself (dir/<name>), so templates made before tags existed are
// their name's default tag unchanged; every other tag's build is a
// directory of its own, dir/<name>:<tag>, holding only a meta.json. Tagged
// builds are always built templates (layers under dir/.layers) or stand on
// a template with a rootfs of its own (Info.Base), so no overlay lower
// directory ever has a ":" in its path (overlayfs separates its lower
// directories with ":").

// DefaultTag is the tag a build without one gets and a name without one
// means, as in E2B.
const DefaultTag = "default"

// latestTag is taken as DefaultTag: sbx accepted "name:latest" for the
// default build before it had tags.
const latestTag = "latest"

var tagRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidateTag returns an error of class errdefs.ErrInvalidArgument unless
// tag is a valid tag ([a-z0-9][a-z0-9._-]{0,62}, the same rule as names).
func ValidateTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid template tag %q: want [a-z0-9][a-z0-9._-]{0,62}", tag)
	}
	return nil
}

// ParseRef splits a template reference, "name" or "name:tag", into its
// name and tag (DefaultTag when none is given; "latest" is DefaultTag
// too). A bad name or tag is errdefs.ErrInvalidArgument.
func ParseRef(ref string) (name, tag string, err error) {
	name, tag, hasTag := strings.Cut(ref, ":")
	if err := ValidateName(name); err != nil {
		return "", "", err
	}
	if !hasTag {
		return name, DefaultTag, nil
	}
	if err := ValidateTag(tag); err != nil {
		return "", "", err
	}
	if tag == latestTag {
		tag = DefaultTag
	}
	return name, tag, nil
}

// Ref is the canonical reference of a name's tag: the name alone for
// DefaultTag, "name:tag" otherwise. Info.Name holds it.
func Ref(name, tag string) string {
	if tag == DefaultTag || tag == latestTag || tag == "" {
		return name
	}
	return name + ":" + tag
}

// CanonicalRef returns ref in its canonical form (see Ref), or
// errdefs.ErrInvalidArgument.
func CanonicalRef(ref string) (string, error) {
	name, tag, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	return Ref(name, tag), nil
}

// Tag is one tag of a template name.
type Tag struct {
	// Tag is the tag ("default" for the name's own build).
	Tag string
	// BuildID identifies the build the tag points at (see Info.ID).
	BuildID string
	// Assigned is when the tag was given to that build.
	Assigned time.Time
}

// ID identifies the build of info: the build's id for built templates
// made since tags exist, otherwise one derived from the name and the
// creation time, the same on every read.
func (info Info) ID() string {
	if info.BuildID != "" {
		return info.BuildID
	}
	h := sha256.Sum256([]byte(info.Name + "\x00" + info.Created.UTC().Format(time.RFC3339Nano)))
	h[6] = h[6]&0x0f | 0x50 // a UUID's version nibble: 5, name-based
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Tags returns the tags of template name, sorted with the default tag
// first. A name with no tag at all is errdefs.ErrNotFound.
func (s *Store) Tags(ctx context.Context, name string) ([]Tag, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	refs, err := s.Refs(name)
	if err != nil {
		return nil, err
	}
	var out []Tag
	for _, ref := range refs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := s.Get(ref)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		_, tag, _ := ParseRef(ref)
		out = append(out, Tag{Tag: tag, BuildID: info.ID(), Assigned: firstTime(info.Tagged, info.Created)})
	}
	if len(out) == 0 {
		return nil, errdefs.New(errdefs.ErrNotFound, "template %q not found", name)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Tag == DefaultTag) != (out[j].Tag == DefaultTag) {
			return out[i].Tag == DefaultTag
		}
		return out[i].Tag < out[j].Tag
	})
	return out, nil
}

// Exists reports whether template name has any tag.
func (s *Store) Exists(name string) bool {
	if ValidateName(name) != nil {
		return false
	}
	refs, err := s.Refs(name)
	return err == nil && len(refs) > 0
}

// Refs lists the canonical references of name's tags found on disk
// (complete ones: with a meta.json).
func (s *Store) Refs(name string) ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	var refs []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() || n != name && !strings.HasPrefix(n, name+":") {
			continue
		}
		if c, err := CanonicalRef(n); err != nil || c != n {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.dir, n, metaFile)); err != nil {
			continue
		}
		refs = append(refs, n)
	}
	return refs, nil
}

// listAll returns every complete template and tag (List returns only the
// default tags), for the checks that must see every user of a layer.
func (s *Store) listAll(ctx context.Context) ([]Info, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	var out []Info
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c, err := CanonicalRef(e.Name()); !e.IsDir() || err != nil || c != e.Name() {
			continue
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
	return out, nil
}

// AssignTags points each of tags of target's name at target's build
// (target is "name" or "name:tag"), replacing what a tag pointed at
// before, and returns the Info of target. Each tag's own entry is written
// by install, which the caller may wrap (to refuse replacing a tag that
// sandboxes run from); nil installs directly. A missing target is
// errdefs.ErrNotFound; a bad tag errdefs.ErrInvalidArgument; a default tag
// held by a template with a rootfs of its own errdefs.ErrConflict.
func (s *Store) AssignTags(ctx context.Context, target string, tags []string, install func(ctx context.Context, ref string, do func(context.Context, string) error) error) (Info, error) {
	name, _, err := ParseRef(target)
	if err != nil {
		return Info{}, err
	}
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return Info{}, err
		}
	}
	src, err := s.Get(target)
	if err != nil {
		return Info{}, err
	}
	if install == nil {
		install = func(ctx context.Context, ref string, do func(context.Context, string) error) error {
			return do(ctx, ref)
		}
	}
	for _, t := range tags {
		ref := Ref(name, t)
		if ref == src.Name {
			continue
		}
		err := install(ctx, ref, func(ctx context.Context, ref string) error {
			return s.writeTag(ctx, src, ref)
		})
		if err != nil {
			return Info{}, err
		}
	}
	return src, nil
}

// writeTag makes ref an entry for the build of src.
func (s *Store) writeTag(ctx context.Context, src Info, ref string) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if old, err := s.Get(ref); err == nil {
		if len(old.Stack) == 0 && old.Base == "" {
			return errdefs.New(errdefs.ErrConflict, "template %q exists and was not built from steps; remove it first", ref)
		}
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	info := src
	info.Name, info.RootfsPath, info.LayerPaths = ref, "", nil
	info.BuildID = src.ID()
	info.Tagged = time.Now().UTC()
	if len(src.Stack) == 0 && src.Base == "" {
		info.Base = src.Name // a template with a rootfs of its own
	}
	if err := s.writeMeta(info); err != nil {
		return err
	}
	s.gcLayers(ctx) // what the tag pointed at before may be unused now
	s.logger.Info("template tagged", "template", ref, "build_id", info.BuildID)
	return nil
}

// writeMeta makes info the meta.json of template info.Name, atomically,
// making its directory if needed. The caller holds the lock.
func (s *Store) writeMeta(info Info) error {
	b, err := jsonIndent(info)
	if err != nil {
		return err
	}
	dst := filepath.Join(s.dir, info.Name)
	if _, err := os.Lstat(dst); err == nil {
		meta := filepath.Join(dst, metaFile)
		if err := writeFileSync(meta+".tmp", b); err != nil {
			return err
		}
		if err := os.Rename(meta+".tmp", meta); err != nil {
			return fmt.Errorf("replace template %q: %w", info.Name, err)
		}
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	build := filepath.Join(s.dir, buildPrefx+strings.ReplaceAll(info.Name, ":", "-")+"-"+randSuffix())
	if err := os.Mkdir(build, 0o755); err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(build, metaFile), b); err != nil {
		os.RemoveAll(build)
		return err
	}
	if err := os.Rename(build, dst); err != nil {
		os.RemoveAll(build)
		return fmt.Errorf("install template %q: %w", info.Name, err)
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func firstTime(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}
