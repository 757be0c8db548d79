package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/objstore"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestCollect runs the Collector against the real test S3 server
// (SeaweedFS) and a real store: indexes of snapshots and sandboxes that
// are gone go, their blobs and orphans go once unreferenced for the
// grace, and nothing younger than the grace goes; what a template, a
// snapshot or a paused sandbox still names stays, and so does a blob that
// an index came to name again meanwhile.
func TestCollect(t *testing.T) {
	ctx := context.Background()
	ep, bucket, ak, sk := harness.S3(t)
	b, err := objstore.Open(ctx, fmt.Sprintf("s3://%s/collect-%d-%d?endpoint=%s", bucket, os.Getpid(), time.Now().UnixNano(), ep), objstore.Credentials{AccessKey: ak, SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, sb := range []*store.Sandbox{
		{ID: "paused1", State: StatePaused},
		{ID: "killed1", State: StateKilled},
	} {
		sb.Template, sb.Runtime = "base", "runc"
		if err := db.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutSnapshot(ctx, &store.Snapshot{ID: "snap1", SandboxID: "paused1", Template: "base", Kind: "files", State: "ready", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	put := func(key string, body []byte) {
		t.Helper()
		if err := b.Put(ctx, key, strings.NewReader(string(body)), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	blob := func(name string) remoteBlob {
		t.Helper()
		sum := sha256.Sum256([]byte(name))
		d := "sha256:" + hex.EncodeToString(sum[:])
		put(remoteBlobKey(d), []byte(name))
		return remoteBlob{Digest: d, Size: int64(len(name))}
	}
	index := func(key string, v any) {
		t.Helper()
		body, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		put(key, body)
	}
	tplRoot, tplLayer := blob("template rootfs"), blob("template layer")
	snapLayer, snapMem := blob("snapshot layer"), blob("snapshot memory")
	pausedUpper := blob("paused upper")
	goneSnap, killedUpper, noRecord := blob("gone snapshot layer"), blob("killed upper"), blob("no record upper")
	orphan, orphan2 := blob("orphan"), blob("orphan 2")
	index("templates/t.json", map[string]any{"info": map[string]any{"name": "t"}, "rootfs": tplRoot, "layers": map[string]any{"l1": tplLayer}})
	index(snapshotKey("snap1"), snapshotIndex{Layer: snapLayer, Memory: &snapMem})
	index(snapshotKey("snap-gone"), snapshotIndex{Layer: goneSnap})
	index(pausedKey("paused1"), pausedIndex{SandboxID: "paused1", Upper: pausedUpper})
	index(pausedKey("killed1"), pausedIndex{SandboxID: "killed1", Upper: killedUpper})
	index(pausedKey("norecord"), pausedIndex{SandboxID: "norecord", Upper: noRecord})

	t0 := time.Now()
	now := t0
	c := &Collector{Bucket: b, Store: db, Now: func() time.Time { return now }}
	collect := func(at time.Duration) Collected {
		t.Helper()
		now = t0.Add(at)
		got, err := c.Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got.Indexes)
		slices.Sort(got.Blobs)
		return got
	}
	keys := func(bs ...remoteBlob) []string {
		var out []string
		for _, b := range bs {
			out = append(out, remoteBlobKey(b.Digest))
		}
		slices.Sort(out)
		return out
	}

	// Within the grace of their upload, nothing goes.
	if got := collect(30 * time.Minute); len(got.Indexes)+len(got.Blobs) != 0 {
		t.Fatalf("collected within the grace: %+v", got)
	}
	// Past it: the indexes of what is gone, and the orphans that were
	// already unreferenced an hour ago.
	got := collect(2 * time.Hour)
	if want := []string{pausedKey("killed1"), pausedKey("norecord"), snapshotKey("snap-gone")}; !slices.Equal(got.Indexes, want) {
		t.Fatalf("indexes collected: %v, want %v", got.Indexes, want)
	}
	if want := keys(orphan, orphan2); !slices.Equal(got.Blobs, want) {
		t.Fatalf("blobs collected: %v, want %v", got.Blobs, want)
	}
	if got.Bytes != orphan.Size+orphan2.Size {
		t.Fatalf("bytes collected: %d", got.Bytes)
	}
	// An index that names an unreferenced blob again keeps it.
	again := blob("gone snapshot layer") // same content, same digest
	index(pausedKey("paused1"), pausedIndex{SandboxID: "paused1", Upper: pausedUpper, Memory: &again})
	got = collect(3*time.Hour + time.Minute)
	if want := keys(killedUpper, noRecord); len(got.Indexes) != 0 || !slices.Equal(got.Blobs, want) {
		t.Fatalf("third collection: %+v, want blobs %v", got, want)
	}
	for _, kept := range append(keys(tplRoot, tplLayer, snapLayer, snapMem, pausedUpper, again), "templates/t.json", snapshotKey("snap1"), pausedKey("paused1")) {
		if ok, err := b.Exists(ctx, kept); err != nil || !ok {
			t.Errorf("%s collected (or unreadable: %v)", kept, err)
		}
	}
	for _, gone := range keys(orphan, orphan2, killedUpper, noRecord) {
		if ok, err := b.Exists(ctx, gone); err != nil || ok {
			t.Errorf("%s still in the bucket (%v)", gone, err)
		}
	}
	// Nothing left to do.
	if got := collect(5 * time.Hour); len(got.Indexes)+len(got.Blobs) != 0 {
		t.Fatalf("a collection with nothing to collect: %+v", got)
	}
}
