package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/objstore"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/template"
)

// Garbage collection of the object store.
//
// The bucket holds indexes (templates/<name>.json, snapshots/<id>.json,
// paused/<id>.json) and the content-addressed blobs they name
// (blobs/sha256/<hex>). A snapshot deleted, a sandbox killed, a template
// removed, or a node lost mid-upload can leave indexes and blobs that
// nothing refers to. A Collector removes them:
//
//   - a snapshot's index once the store has no such snapshot, a paused
//     sandbox's once its record is gone or ended (killed, failed); a
//     template's index stays (removing the template removes it);
//   - a blob that no remaining index names, once it has been so for
//     Grace, and was written more than Grace ago.
//
// The grace keeps what an upload in flight has put up: its blobs go before
// its index, and a blob it found already there (and so did not write
// again) may have been unreferenced until its index lands. An index is
// never removed within Grace of being written either. A node that cannot
// read an index this round removes no blob.

// DefaultCollectGrace is how long an unreferenced object is kept.
const DefaultCollectGrace = time.Hour

// DefaultCollectEvery is how often a server collects.
const DefaultCollectEvery = 10 * time.Minute

// CollectBucket is the object store as the Collector needs it
// (*objstore.Bucket).
type CollectBucket interface {
	Remote
	List(ctx context.Context, prefix string) ([]objstore.ObjectInfo, error)
}

// CollectStore is what the Collector reads of the whole store.
type CollectStore interface {
	GetSandbox(ctx context.Context, id string) (*store.Sandbox, error)
	GetSnapshot(ctx context.Context, ref string) (*store.Snapshot, error)
}

// Collector garbage-collects a bucket. Its methods are safe for one
// goroutine at a time.
type Collector struct {
	Bucket CollectBucket
	Store  CollectStore
	// Grace is how long an unreferenced object is kept
	// (DefaultCollectGrace if 0).
	Grace time.Duration
	Log   *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time

	mu         sync.Mutex
	unrefSince map[string]time.Time // blob key → first seen unreferenced
}

// Collected is what one collection removed.
type Collected struct {
	Indexes, Blobs []string
	// Bytes is the blobs' size.
	Bytes int64
}

// Run collects every every (DefaultCollectEvery if 0) until ctx ends.
func (c *Collector) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultCollectEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			got, err := c.Collect(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				c.log().Warn("object store: collect garbage", "err", err)
			case err == nil && len(got.Indexes)+len(got.Blobs) > 0:
				c.log().Info("object store: garbage collected", "indexes", len(got.Indexes), "blobs", len(got.Blobs), "bytes", got.Bytes)
			}
		}
	}
}

func (c *Collector) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// Collect runs one collection.
func (c *Collector) Collect(ctx context.Context) (Collected, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out Collected
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	grace := c.Grace
	if grace <= 0 {
		grace = DefaultCollectGrace
	}
	old := func(o objstore.ObjectInfo) bool { return now.Sub(o.Modified) >= grace }
	// Blobs are listed before the indexes: a blob written after this
	// listing is not a candidate, whatever index names it.
	blobs, err := c.Bucket.List(ctx, "blobs/")
	if err != nil {
		return out, err
	}
	refs := map[string]bool{}
	readable := true
	for _, prefix := range []string{"templates/", "snapshots/", "paused/"} {
		objs, err := c.Bucket.List(ctx, prefix)
		if err != nil {
			return out, err
		}
		for _, o := range objs {
			id, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, prefix), ".json")
			if !ok || strings.Contains(id, "/") {
				continue // not an index
			}
			if prefix != "templates/" && old(o) {
				gone, err := c.indexGone(ctx, prefix, id)
				if err != nil {
					return out, err
				}
				if gone {
					if err := c.Bucket.Delete(ctx, o.Key); err != nil {
						return out, err
					}
					out.Indexes = append(out.Indexes, o.Key)
					continue
				}
			}
			keys, err := c.indexBlobs(ctx, prefix, o.Key)
			if err != nil {
				if !errors.Is(err, errdefs.ErrNotFound) { // removed meanwhile
					c.log().Warn("object store: an index cannot be read; no blob is collected this round", "key", o.Key, "err", err)
					readable = false
				}
				continue
			}
			for _, k := range keys {
				refs[k] = true
			}
		}
	}
	if c.unrefSince == nil {
		c.unrefSince = map[string]time.Time{}
	}
	seen := map[string]bool{}
	for _, b := range blobs {
		seen[b.Key] = true
		if refs[b.Key] {
			delete(c.unrefSince, b.Key)
			continue
		}
		since, ok := c.unrefSince[b.Key]
		if !ok {
			c.unrefSince[b.Key], since = now, now
		}
		if !readable || !old(b) || now.Sub(since) < grace {
			continue
		}
		if err := c.Bucket.Delete(ctx, b.Key); err != nil {
			return out, err
		}
		delete(c.unrefSince, b.Key)
		out.Blobs = append(out.Blobs, b.Key)
		out.Bytes += b.Size
	}
	for k := range c.unrefSince {
		if !seen[k] {
			delete(c.unrefSince, k) // removed by someone else
		}
	}
	return out, nil
}

// indexGone reports whether the snapshot or sandbox of index prefix+id no
// longer needs its copy.
func (c *Collector) indexGone(ctx context.Context, prefix, id string) (bool, error) {
	switch prefix {
	case "snapshots/":
		_, err := c.Store.GetSnapshot(ctx, id)
		if errors.Is(err, errdefs.ErrNotFound) {
			return true, nil
		}
		return false, err
	case "paused/":
		sb, err := c.Store.GetSandbox(ctx, id)
		if errors.Is(err, errdefs.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return sb.State == StateKilled || sb.State == StateFailed, nil
	}
	return false, nil
}

// indexBlobs reads index key and returns the keys of the blobs it names.
func (c *Collector) indexBlobs(ctx context.Context, prefix, key string) ([]string, error) {
	rc, err := c.Bucket.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxRemoteIndex))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	var blobs []remoteBlob
	switch prefix {
	case "templates/":
		return template.IndexBlobs(body)
	case "snapshots/":
		var idx snapshotIndex
		if err := json.Unmarshal(body, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		blobs = append(blobs, idx.Layer)
		if idx.Memory != nil {
			blobs = append(blobs, *idx.Memory)
		}
	case "paused/":
		var idx pausedIndex
		if err := json.Unmarshal(body, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		blobs = append(blobs, idx.Upper)
		if idx.Memory != nil {
			blobs = append(blobs, *idx.Memory)
		}
	}
	var out []string
	for _, b := range blobs {
		if b.Digest != "" {
			out = append(out, remoteBlobKey(b.Digest))
		}
	}
	return out, nil
}
