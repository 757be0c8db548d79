package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/units"
)

// The remote tier.
//
// A Store with a Remote (an S3 bucket shared by several servers) publishes
// each template it makes there and fetches, on first use, the ones it
// lacks. In the bucket:
//
//	templates/<name>.json       the index: the template's Info and the blobs it is made of
//	blobs/sha256/<hex digest>   one directory tree (a rootfs or a layer's fs) as a plain tar
//
// Blobs are content-addressed, so a layer or rootfs two templates share
// is stored once, and a fetch verifies every byte it unpacks against the
// digest the index names before the tree gets its name. A fetched tree is
// unpacked under a temporary name and renamed into place, like a build;
// fetches of one name are serialised by a flock, in this process and in
// others sharing the store.

// Remote is the object storage a Store shares templates through
// (internal/objstore's Bucket is one). Its methods must be safe for
// concurrent use. Get of a missing key is errdefs.ErrNotFound.
type Remote interface {
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	Exists(ctx context.Context, key string) (bool, error)
	Delete(ctx context.Context, key string) error
}

// remoteIndex is templates/<name>.json.
type remoteIndex struct {
	// Info is the template's meta.json.
	Info Info `json:"info"`
	// Rootfs is the template's own rootfs (templates with no Stack).
	Rootfs *remoteBlob `json:"rootfs,omitempty"`
	// Layers are the layers of Info.Stack, by id.
	Layers map[string]remoteBlob `json:"layers,omitempty"`
}

type remoteBlob struct {
	Digest string `json:"digest"` // "sha256:<hex>"
	Size   int64  `json:"size"`
	// Empty marks a layer whose step changed nothing.
	Empty bool `json:"empty,omitempty"`
}

const maxIndexBytes = 1 << 20

// IndexBlobs returns the keys of the blobs that template index body (the
// object templates/<name>.json) is made of: what a garbage collection of
// the bucket must keep while the index stands.
func IndexBlobs(body []byte) ([]string, error) {
	var idx remoteIndex
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, fmt.Errorf("template index: %w", err)
	}
	var out []string
	if idx.Rootfs != nil && idx.Rootfs.Digest != "" {
		out = append(out, blobKey(idx.Rootfs.Digest))
	}
	for _, b := range idx.Layers {
		if b.Digest != "" {
			out = append(out, blobKey(b.Digest))
		}
	}
	return out, nil
}

func indexKey(name string) string { return "templates/" + name + ".json" }

func blobKey(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

// Publish uploads template name and what it is made of to s.Remote (its
// base template too, unless the bucket has it), then its index. With
// replace false a template the bucket already names is left as it is.
func (s *Store) Publish(ctx context.Context, name string, replace bool) error {
	if s.Remote == nil {
		return nil
	}
	info, err := s.Get(name)
	if err != nil {
		return err
	}
	if !replace {
		ok, err := s.Remote.Exists(ctx, indexKey(name))
		if err != nil || ok {
			return err
		}
	}
	start := time.Now()
	idx := remoteIndex{Info: info}
	var sent int64
	if len(info.Stack) == 0 && info.Base == "" {
		b, n, err := s.putTree(ctx, info.RootfsPath)
		if err != nil {
			return fmt.Errorf("publish template %q: %w", name, err)
		}
		idx.Rootfs, sent = &b, n
	} else {
		if info.Base != "" {
			if err := s.Publish(ctx, info.Base, false); err != nil {
				return fmt.Errorf("publish template %q: base: %w", name, err)
			}
		}
		idx.Layers = map[string]remoteBlob{}
		for i, id := range info.Stack {
			ref, err := s.PinLayer(id)
			if err != nil {
				return fmt.Errorf("publish template %q: %w", name, err)
			}
			b, n, err := s.putTree(ctx, info.LayerPaths[i])
			ref.Release()
			if err != nil {
				return fmt.Errorf("publish template %q: layer %s: %w", name, id, err)
			}
			_, statErr := os.Stat(filepath.Join(s.layerDir(id), "empty"))
			b.Empty = statErr == nil
			idx.Layers[id] = b
			sent += n
		}
	}
	body, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := s.Remote.Put(ctx, indexKey(name), strings.NewReader(string(body)), int64(len(body))); err != nil {
		return fmt.Errorf("publish template %q: %w", name, err)
	}
	el := time.Since(start)
	s.logger.Info("template published", "template", name, "uploaded", units.Bytes(sent, units.IEC), "seconds", el.Seconds(), "mib_per_s", mibPerSec(sent, el))
	return nil
}

// unpublish deletes template name's index from s.Remote, so that no server
// fetches it any more (those that did keep their copy). Its blobs stay:
// other templates may share them.
func (s *Store) unpublish(ctx context.Context, name string) error {
	if s.Remote == nil {
		return nil
	}
	if err := s.Remote.Delete(ctx, indexKey(name)); err != nil {
		return fmt.Errorf("remove template %q from the object store: %w", name, err)
	}
	return nil
}

// putTree packs the tree at root into a temporary file, then uploads it
// under its digest unless the bucket has that blob already. It returns the
// blob and the bytes sent.
func (s *Store) putTree(ctx context.Context, root string) (remoteBlob, int64, error) {
	digest, size, sent, err := PutTree(ctx, s.Remote, s.dir, root, s.IDShift)
	return remoteBlob{Digest: digest, Size: size}, sent, err
}

// PutTree packs the tree at root as PackTree does (owners less shift,
// without the entries skip names) into a temporary file in dir, then
// uploads it to r as blobs/sha256/<hex> unless r has that blob already.
// It returns the blob's digest ("sha256:<hex>") and size, and the bytes
// sent (0 when the blob was there). Snapshots and paused sandboxes
// (internal/sandbox) share the blobs this way.
func PutTree(ctx context.Context, r Remote, dir, root string, shift uint32, skip ...string) (digest string, size, sent int64, err error) {
	f, err := os.CreateTemp(dir, packPrefx+"*")
	if err != nil {
		return "", 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	if err := packTreeSkip(ctx, io.MultiWriter(f, h), root, shift, skip); err != nil {
		return "", 0, 0, err
	}
	if size, err = f.Seek(0, io.SeekCurrent); err != nil {
		return "", 0, 0, err
	}
	digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	if ok, err := r.Exists(ctx, blobKey(digest)); err != nil {
		return "", 0, 0, err
	} else if ok {
		return digest, size, 0, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, 0, err
	}
	if err := r.Put(ctx, blobKey(digest), f, size); err != nil {
		return "", 0, 0, err
	}
	return digest, size, size, nil
}

// Fetch makes template name local from s.Remote: it reads the index,
// fetches the base template if this store lacks it, downloads and verifies
// each missing layer or rootfs, and installs the template. A template the
// store has already is returned as it is. Neither here nor in the bucket
// is errdefs.ErrNotFound. progress (may be nil) gets a line per blob.
func (s *Store) Fetch(ctx context.Context, name string, progress io.Writer) (Info, error) {
	name, err := CanonicalRef(name)
	if err != nil {
		return Info{}, err
	}
	if s.Remote == nil {
		return s.Get(name)
	}
	if progress == nil {
		progress = io.Discard
	}
	unlock, err := s.lockNamed(ctx, ".fetch-"+name+".lock")
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	if info, err := s.Get(name); !errors.Is(err, errdefs.ErrNotFound) {
		return info, err // fetched (or built) while we waited
	}
	idx, err := s.readIndex(ctx, name)
	if err != nil {
		return Info{}, err
	}
	info := idx.Info
	info.Name = name
	info.IDShift = s.IDShift // unpacked with this store's shift
	s.logger.Info("fetching template from the object store", "template", name)
	start := time.Now()
	var got int64
	if len(info.Stack) == 0 && info.Base == "" {
		if idx.Rootfs == nil {
			return Info{}, fmt.Errorf("template %q in the object store: index names no rootfs", name)
		}
		if strings.Contains(name, ":") {
			// A tag is never a rootfs of its own (see tags.go).
			return Info{}, fmt.Errorf("template %q in the object store: a tag with a rootfs", name)
		}
		s.sweepFetches(name)
		build := filepath.Join(s.dir, fetchPrefx+name+"-"+randSuffix())
		if err := os.Mkdir(build, 0o755); err != nil {
			return Info{}, err
		}
		defer os.RemoveAll(build) // gone once renamed into place
		fmt.Fprintf(progress, "fetching template %s from the object store (%s)\n", name, units.Bytes(idx.Rootfs.Size, units.IEC))
		if err := s.getTree(ctx, *idx.Rootfs, filepath.Join(build, rootfsDir)); err != nil {
			return Info{}, fmt.Errorf("fetch template %q: %w", name, err)
		}
		got = idx.Rootfs.Size
		syncTree(build)
		unlockStore, err := s.lock(ctx)
		if err != nil {
			return Info{}, err
		}
		err = s.install(build, info)
		unlockStore()
		if err != nil {
			return Info{}, err
		}
	} else {
		if info.Base != "" {
			if info.Base == name {
				return Info{}, fmt.Errorf("template %q in the object store is its own base", name)
			}
			if _, err := s.Get(info.Base); errors.Is(err, errdefs.ErrNotFound) {
				if _, err := s.Fetch(ctx, info.Base, progress); err != nil {
					return Info{}, fmt.Errorf("fetch template %q: base: %w", name, err)
				}
			} else if err != nil {
				return Info{}, err
			}
		}
		var refs []*LayerRef
		defer func() {
			for _, r := range refs {
				r.Release()
			}
		}()
		for i, id := range info.Stack {
			ref, err := s.PinLayer(id)
			if err == nil {
				refs = append(refs, ref)
				continue
			}
			if !errors.Is(err, errdefs.ErrNotFound) {
				return Info{}, err
			}
			b, ok := idx.Layers[id]
			if !ok {
				return Info{}, fmt.Errorf("template %q in the object store: index lacks layer %s", name, id)
			}
			fmt.Fprintf(progress, "fetching template %s from the object store: layer %d/%d (%s)\n", name, i+1, len(info.Stack), units.Bytes(b.Size, units.IEC))
			tmp, hold, install, err := s.newLayer(id)
			if err != nil {
				return Info{}, err
			}
			if err := s.getTree(ctx, b, filepath.Join(tmp, "fs")); err != nil {
				hold.Close()
				os.RemoveAll(tmp)
				return Info{}, fmt.Errorf("fetch template %q: layer %s: %w", name, id, err)
			}
			ref, err = install(b.Empty)
			if err != nil {
				return Info{}, err
			}
			refs = append(refs, ref)
			got += b.Size
		}
		if _, err := s.InstallBuilt(ctx, info); err != nil {
			return Info{}, err
		}
	}
	el := time.Since(start)
	s.logger.Info("template fetched", "template", name, "downloaded", units.Bytes(got, units.IEC), "seconds", el.Seconds(), "mib_per_s", mibPerSec(got, el))
	return s.Get(name)
}

const (
	fetchPrefx = ".fetch-"
	packPrefx  = ".pack-"
)

// fetchInstead fetches name from s.Remote before this store makes it
// itself; it reports whether it did. A bucket without it is no error.
func (s *Store) fetchInstead(ctx context.Context, name string, progress io.Writer) (bool, error) {
	if s.Remote == nil {
		return false, nil
	}
	_, err := s.Fetch(ctx, name, progress)
	if errors.Is(err, errdefs.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// publishMade publishes template name, just made here, replacing what the
// bucket had under its name. A failure is logged, not returned: the
// template is there for this server, and other servers will not find it
// until it is built or published again.
func (s *Store) publishMade(ctx context.Context, name string) {
	if s.Remote == nil {
		return
	}
	if err := s.Publish(ctx, name, true); err != nil {
		s.logger.Error("publishing template to the object store failed; other servers cannot fetch it", "template", name, "err", err)
	}
}

// sweepFetches removes what interrupted fetches of name left. The caller
// holds name's fetch lock, so none of it is in use.
func (s *Store) sweepFetches(name string) {
	m, _ := filepath.Glob(filepath.Join(s.dir, fetchPrefx+name+"-*"))
	for _, p := range m {
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			os.RemoveAll(p)
		}
	}
}

func (s *Store) readIndex(ctx context.Context, name string) (remoteIndex, error) {
	rc, err := s.Remote.Get(ctx, indexKey(name))
	if errors.Is(err, errdefs.ErrNotFound) {
		return remoteIndex{}, errdefs.Wrap(errdefs.ErrNotFound, err, "template %q not found", name)
	}
	if err != nil {
		return remoteIndex{}, err
	}
	defer rc.Close()
	var idx remoteIndex
	dec := json.NewDecoder(io.LimitReader(rc, maxIndexBytes))
	if err := dec.Decode(&idx); err != nil {
		return remoteIndex{}, fmt.Errorf("template %q in the object store: bad index: %w", name, err)
	}
	if idx.Info.Name != name {
		return remoteIndex{}, fmt.Errorf("template %q in the object store: index names %q", name, idx.Info.Name)
	}
	probe := idx.Info
	if err := s.fillLayers(&probe); err != nil { // checks the ids and the base's name
		return remoteIndex{}, err
	}
	return idx, nil
}

// getTree downloads blob b and unpacks it as the new directory dst,
// removing dst again unless every byte matched b's digest.
func (s *Store) getTree(ctx context.Context, b remoteBlob, dst string) error {
	want, ok := strings.CutPrefix(b.Digest, "sha256:")
	if !ok || len(want) != 64 || b.Size < 0 {
		return fmt.Errorf("bad blob %q in the index", b.Digest)
	}
	if _, err := hex.DecodeString(want); err != nil {
		return fmt.Errorf("bad blob %q in the index", b.Digest)
	}
	rc, err := s.Remote.Get(ctx, blobKey(b.Digest))
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	cr := &countReader{r: io.LimitReader(rc, b.Size+1)}
	r := io.TeeReader(cr, h)
	if err := unpackTree(ctx, r, dst, s.IDShift); err != nil {
		os.RemoveAll(dst)
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil { // tar's trailing padding
		os.RemoveAll(dst)
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want || cr.n != b.Size {
		os.RemoveAll(dst)
		return fmt.Errorf("blob %s: downloaded %d bytes with digest sha256:%s, want %d bytes: the object store's copy is damaged", b.Digest, cr.n, got, b.Size)
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func mibPerSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / (1 << 20) / d.Seconds()
}
