package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/disk"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/template"
)

// The object store tier of snapshots and paused sandboxes.
//
// With a Remote (an S3 bucket the nodes of a fleet share, --object-store),
// what a node keeps of a snapshot or a paused sandbox on its disk is also
// kept in the bucket, so that another node can use it:
//
//	snapshots/<id>.json       a snapshot's record and the blobs of its layer (and memory image)
//	paused/<sandbox id>.json  a paused sandbox's pause (its time and kind) and the blobs of its files (and memory image)
//	blobs/sha256/<hex>        one directory tree as a plain tar, shared with templates (internal/template)
//
// Blobs are content-addressed and go up before the index that names them,
// so an index is only ever read whole and complete; a download is verified
// against the digest before its tree gets its name. A snapshot is fetched
// by the first create from it on another node, into the same place a
// snapshot taken there would be; a paused sandbox is fetched by the node
// that takes it over ([Manager.Adopt]), which then moves the sandbox's
// record to itself with one compare-and-set on its version and node.
//
// What does not travel: a frozen box's memory (the cgroup freezer keeps it
// in the old host's RAM; the sandbox resumes elsewhere over its files, its
// processes started afresh), the volumes a sandbox mounts (such a sandbox
// stays on its node) and its egress policy (the new node's default).

// Remote is the object storage snapshots and paused sandboxes are kept in:
// the same bucket, and the same contract, as templates' (internal/objstore's
// Bucket is one).
type Remote = template.Remote

// Fleet is the whole store that the nodes of a fleet share (a *store.DB
// that is not a node's view): what a node reads and moves of other nodes'
// records.
type Fleet interface {
	GetSandbox(ctx context.Context, id string) (*store.Sandbox, error)
	GetSnapshot(ctx context.Context, ref string) (*store.Snapshot, error)
	CountSandboxesByTemplate(ctx context.Context, name string) (int, error)
	ListSnapshots(ctx context.Context) ([]*store.Snapshot, error)
	MoveSandbox(ctx context.Context, sb *store.Sandbox, to string) error
	MoveSandboxFromDown(ctx context.Context, sb *store.Sandbox, to string, now time.Time) error
}

// remoteTier packs trees into blobs of a Remote and back.
type remoteTier struct {
	r Remote
	// tmp is where blobs are packed before they go up.
	tmp string
	log *slog.Logger
}

// remoteBlob is one tree in the bucket.
type remoteBlob struct {
	Digest string `json:"digest"` // "sha256:<hex>"
	Size   int64  `json:"size"`
}

const maxRemoteIndex = 1 << 20

// upperSkip is what of a sandbox's upper layer stays behind: the mount
// points sbx makes as host root at every boot (agentapi.PrivatePrefix),
// which the new node makes again.
var upperSkip = []string{".sbx"}

func remoteBlobKey(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

// putTree packs the tree at root (owners less shift, without the entries
// skip names) and uploads it unless the bucket has its blob. It returns
// the blob and the bytes sent.
func (t *remoteTier) putTree(ctx context.Context, root string, shift uint32, skip ...string) (remoteBlob, int64, error) {
	if err := os.MkdirAll(t.tmp, 0o700); err != nil {
		return remoteBlob{}, 0, err
	}
	digest, size, sent, err := template.PutTree(ctx, t.r, t.tmp, root, shift, skip...)
	if err != nil {
		return remoteBlob{}, 0, fmt.Errorf("put %s: %w", root, err)
	}
	return remoteBlob{Digest: digest, Size: size}, sent, nil
}

// getTree downloads blob b and unpacks it as the new directory dst (owners
// plus shift), removing dst again unless every byte matched b's digest.
func (t *remoteTier) getTree(ctx context.Context, b remoteBlob, dst string, shift uint32) error {
	want, ok := strings.CutPrefix(b.Digest, "sha256:")
	if _, err := hex.DecodeString(want); !ok || err != nil || len(want) != 64 || b.Size < 0 {
		return fmt.Errorf("bad blob %q in the index", b.Digest)
	}
	rc, err := t.r.Get(ctx, remoteBlobKey(b.Digest))
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	var n int64
	r := io.TeeReader(&counted{r: io.LimitReader(rc, b.Size+1), n: &n}, h)
	if err := template.UnpackTree(ctx, r, dst, shift); err != nil {
		os.RemoveAll(dst)
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		os.RemoveAll(dst)
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want || n != b.Size {
		os.RemoveAll(dst)
		return fmt.Errorf("blob %s: downloaded %d bytes with digest sha256:%s, want %d bytes: the object store's copy is damaged", b.Digest, n, got, b.Size)
	}
	return nil
}

type counted struct {
	r io.Reader
	n *int64
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// putJSON stores v under key.
func (t *remoteTier) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.r.Put(ctx, key, strings.NewReader(string(b)), int64(len(b)))
}

// getJSON reads key into v; a missing key is errdefs.ErrNotFound.
func (t *remoteTier) getJSON(ctx context.Context, key string, v any) error {
	rc, err := t.r.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, maxRemoteIndex)).Decode(v); err != nil {
		return fmt.Errorf("%s in the object store: bad index: %w", key, err)
	}
	return nil
}

func mibPerSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / (1 << 20) / d.Seconds()
}

func randHex() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Snapshots in the bucket.

// snapshotIndex is snapshots/<id>.json.
type snapshotIndex struct {
	Snapshot store.Snapshot `json:"snapshot"`
	Layer    remoteBlob     `json:"layer"`
	Memory   *remoteBlob    `json:"memory,omitempty"`
}

func snapshotKey(id string) string { return "snapshots/" + id + ".json" }

// publish uploads snapshot sn (ready, on this node) and then its index.
func (s *Snapshots) publish(ctx context.Context, sn *store.Snapshot) error {
	t0 := time.Now()
	idx := snapshotIndex{Snapshot: *sn}
	layer, sent, err := s.remote.putTree(ctx, filepath.Join(s.dir(sn.ID), snapshotLayer), s.shift, upperSkip...)
	if err != nil {
		return fmt.Errorf("publish snapshot %s: layer: %w", sn.ID, err)
	}
	idx.Layer = layer
	if sn.Kind == SnapshotMemory {
		mem, n, err := s.remote.putTree(ctx, filepath.Join(s.dir(sn.ID), snapshotImage), 0)
		if err != nil {
			return fmt.Errorf("publish snapshot %s: memory image: %w", sn.ID, err)
		}
		idx.Memory, sent = &mem, sent+n
	}
	if err := s.remote.putJSON(ctx, snapshotKey(sn.ID), idx); err != nil {
		return fmt.Errorf("publish snapshot %s: %w", sn.ID, err)
	}
	el := time.Since(t0)
	s.log.Info("snapshot published", "snapshot_id", sn.ID, "bytes", sent, "seconds", el.Seconds(), "mib_per_s", mibPerSec(sent, el))
	return nil
}

// fetchRemote finds snapshot ref among the fleet's and makes it local from
// the bucket. A snapshot the fleet lacks is errdefs.ErrNotFound; one the
// bucket lacks (taken before the node had an object store, or whose
// upload failed) is errdefs.ErrFailedPrecondition.
func (s *Snapshots) fetchRemote(ctx context.Context, ref string) (*store.Snapshot, error) {
	if s.remote == nil || s.fleet == nil {
		return nil, errdefs.New(errdefs.ErrNotFound, "snapshot %q not found", ref)
	}
	sn, err := s.fleet.GetSnapshot(ctx, ref)
	if err != nil {
		return nil, err
	}
	if sn.State != "ready" {
		return nil, errdefs.New(errdefs.ErrNotFound, "snapshot %q not found", ref)
	}
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	dir := s.dir(sn.ID)
	if fileExists(filepath.Join(dir, snapshotLayer)) {
		return sn, nil
	}
	var idx snapshotIndex
	if err := s.remote.getJSON(ctx, snapshotKey(sn.ID), &idx); errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "snapshot %q is on node %s and not in the object store", ref, sn.Node)
	} else if err != nil {
		return nil, err
	}
	if idx.Snapshot.ID != sn.ID || (sn.Kind == SnapshotMemory) != (idx.Memory != nil) {
		return nil, fmt.Errorf("snapshot %s in the object store: its index does not match its record", sn.ID)
	}
	t0 := time.Now()
	// Unpacked under a name of its own beside where it goes (a start
	// removes it as a directory without a record), then renamed.
	tmp := dir + ".fetch-" + randHex()
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		return nil, err
	}
	// The snapshot's own directory, as capture makes it.
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, err
	}
	if err := closeBoxDir(tmp, s.idmap); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := s.remote.getTree(ctx, idx.Layer, filepath.Join(tmp, snapshotLayer), s.shift); err != nil {
		return nil, fmt.Errorf("fetch snapshot %s: layer: %w", sn.ID, err)
	}
	got := idx.Layer.Size
	if idx.Memory != nil {
		img := filepath.Join(tmp, snapshotImage)
		if err := s.remote.getTree(ctx, *idx.Memory, img, 0); err != nil {
			return nil, fmt.Errorf("fetch snapshot %s: memory image: %w", sn.ID, err)
		}
		if err := readOnlyTree(img); err != nil {
			return nil, err
		}
		got += idx.Memory.Size
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	el := time.Since(t0)
	s.log.Info("snapshot fetched", "snapshot_id", sn.ID, "from_node", sn.Node, "bytes", got, "seconds", el.Seconds(), "mib_per_s", mibPerSec(got, el))
	return sn, nil
}

// unpublish removes snapshot id's index from the bucket (its blobs stay:
// others may share them).
func (s *Snapshots) unpublish(ctx context.Context, id string) {
	if s.remote == nil {
		return
	}
	if err := s.remote.r.Delete(ctx, snapshotKey(id)); err != nil {
		s.log.Error("remove snapshot from the object store", "snapshot_id", id, "err", err)
	}
}

// Published reports whether snapshot id is in the object store, so that
// any node can make sandboxes from it.
func (s *Snapshots) Published(ctx context.Context, id string) (bool, error) {
	if s.remote == nil {
		return false, nil
	}
	return s.remote.r.Exists(ctx, snapshotKey(id))
}

// Paused sandboxes in the bucket.

// pausedIndex is paused/<sandbox id>.json.
type pausedIndex struct {
	SandboxID string    `json:"sandboxID"`
	Node      string    `json:"node"`
	PausedAt  time.Time `json:"pausedAt"`
	Kind      string    `json:"kind"`
	// Upper is the sandbox's files (its overlay upper layer).
	Upper remoteBlob `json:"upper"`
	// Memory is its memory image (a PauseMemory pause).
	Memory *remoteBlob `json:"memory,omitempty"`

	// source names the copy for a recovery (see Recovered.Copy).
	source string
}

func pausedKey(id string) string { return "paused/" + id + ".json" }

func (m *Manager) shift() uint32 {
	if m.cfg.IDMap != nil {
		return m.cfg.IDMap.HostID
	}
	return 0
}

// publishPaused uploads paused sandbox sb's files (and memory image), then
// its index. The caller holds sb's lock. A frozen box is read while it
// stays frozen; a stopped one has its disk mounted for the copy.
func (m *Manager) publishPaused(ctx context.Context, sb *store.Sandbox) error {
	t0 := time.Now()
	dir := m.dir(sb.ID)
	upper := filepath.Join(dir, "upper")
	if fileExists(filepath.Join(dir, disk.Image)) {
		mnt := filepath.Join(dir, disk.MountDir)
		if !mounted(mnt) {
			if _, err := disk.MountIn(dir); err != nil {
				return fmt.Errorf("mount the sandbox's disk: %w", err)
			}
			defer func() {
				if err := unmountAll(mnt); err != nil {
					m.log.Error("unmount the disk of a paused sandbox", "sandbox_id", sb.ID, "err", err)
				}
			}()
		}
		upper = filepath.Join(mnt, "upper")
	}
	idx := pausedIndex{SandboxID: sb.ID, Node: sb.Node, PausedAt: sb.Life.PausedAt, Kind: sb.Life.PauseKind}
	b, sent, err := m.remote.putTree(ctx, upper, m.shift(), upperSkip...)
	if err != nil {
		return fmt.Errorf("upload the files of paused sandbox %s: %w", sb.ID, err)
	}
	idx.Upper = b
	if sb.Life.PauseKind == PauseMemory {
		b, n, err := m.remote.putTree(ctx, filepath.Join(dir, checkpointDir), 0)
		if err != nil {
			return fmt.Errorf("upload the memory image of paused sandbox %s: %w", sb.ID, err)
		}
		idx.Memory, sent = &b, sent+n
	}
	if err := m.remote.putJSON(ctx, pausedKey(sb.ID), idx); err != nil {
		return fmt.Errorf("upload paused sandbox %s: %w", sb.ID, err)
	}
	el := time.Since(t0)
	m.log.Info("paused sandbox uploaded", "sandbox_id", sb.ID, "kind", idx.Kind, "bytes", sent, "seconds", el.Seconds(), "mib_per_s", mibPerSec(sent, el))
	return nil
}

// publishedPause returns the bucket's copy of paused sandbox sb when it is
// of sb's latest pause; errdefs.ErrFailedPrecondition otherwise.
func (m *Manager) publishedPause(ctx context.Context, sb *store.Sandbox) (*pausedIndex, error) {
	if m.remote == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q: this node has no object store", sb.ID)
	}
	var idx pausedIndex
	err := m.remote.getJSON(ctx, pausedKey(sb.ID), &idx)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "paused sandbox %q has no copy in the object store", sb.ID)
	}
	if err != nil {
		return nil, err
	}
	if idx.SandboxID != sb.ID || !idx.PausedAt.Equal(sb.Life.PausedAt) || idx.Kind != sb.Life.PauseKind {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "paused sandbox %q: the object store holds an earlier pause of it", sb.ID)
	}
	return &idx, nil
}

// Publish makes sure paused sandbox id (this node's) has a copy of its
// latest pause in the object store.
func (r RemoteUse) Publish(ctx context.Context, id string) error {
	m := r.m
	unlock := m.lock(id)
	defer unlock()
	sb, err := m.db.GetSandbox(ctx, id)
	if err != nil {
		return err
	}
	if sb.State != StatePaused {
		return errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s, not paused", id, sb.State)
	}
	if _, err := m.publishedPause(ctx, sb); err == nil {
		return nil
	} else if !errors.Is(err, errdefs.ErrFailedPrecondition) || m.remote == nil {
		return err
	}
	return m.publishPaused(ctx, sb)
}

// Adopt takes paused sandbox id over from the node that holds it (lost,
// draining, or simply another): it fetches the sandbox's files (and memory
// image) from the object store into this node's data directory, then
// moves the record here with a compare-and-set on its version and node,
// so that of two nodes adopting one sandbox one wins and the other cleans
// up. The sandbox stays paused; Resume runs it here. A frozen box's
// memory is on its old host: the sandbox comes with its files only.
func (r RemoteUse) Adopt(ctx context.Context, id string) (*Sandbox, error) {
	m := r.m
	if m.remote == nil || m.cfg.Fleet == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is on another node, and this node has no object store to take it over through", id)
	}
	unlock := m.lock(id)
	defer unlock()
	sb, err := m.cfg.Fleet.GetSandbox(ctx, id)
	if err != nil {
		return nil, err
	}
	self := m.db.Node()
	if sb.Node == self {
		return sb, nil
	}
	if sb.State != StatePaused {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s on node %s; only a paused sandbox moves to another node", id, sb.State, sb.Node)
	}
	if vs, err := m.db.SandboxVolumes(ctx, id); err != nil {
		return nil, err
	} else if len(vs) > 0 {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q mounts volumes, which are on node %s; it cannot move", id, sb.Node)
	}
	idx, err := m.publishedPause(ctx, sb)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	dir := m.dir(id)
	// What an earlier stay of the sandbox here left (its box, network,
	// disk) goes first.
	if _, err := os.Stat(dir); err == nil {
		if _, err := m.runtimeOf(sb); err != nil {
			return nil, err
		}
		m.release(ctx, sb)
		if _, err := os.Stat(dir); err == nil {
			return nil, fmt.Errorf("sandbox %s: an earlier copy here could not be cleared", id)
		}
	}
	if err := m.layOut(ctx, sb, idx); err != nil {
		m.clearDir(dir)
		return nil, fmt.Errorf("fetch paused sandbox %s: %w", id, err)
	}
	from := sb.Node
	if sb.Life.PauseKind == PauseFrozen {
		// Its processes and memory stayed frozen on its old host.
		sb.Life.PauseKind = PauseFilesystem
	}
	if err := m.cfg.Fleet.MoveSandbox(ctx, sb, self); err != nil {
		m.clearDir(dir)
		return nil, err
	}
	got := idx.Upper.Size
	if idx.Memory != nil {
		got += idx.Memory.Size
	}
	el := time.Since(t0)
	m.log.Info("paused sandbox moved here", "sandbox_id", id, "from_node", from, "kind", sb.Life.PauseKind, "bytes", got, "seconds", el.Seconds(), "mib_per_s", mibPerSec(got, el))
	return sb, nil
}

// layOut makes sandbox sb's directory from the bucket's copy idx: its
// files (on a disk of this node's size when this node gives sandboxes
// disks) and its memory image.
func (m *Manager) layOut(ctx context.Context, sb *store.Sandbox, idx *pausedIndex) error {
	dir := m.dir(sb.ID)
	// Closed from the start (mountRootfs closes it for good).
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	upper := filepath.Join(dir, "upper")
	if m.disks != nil {
		d, err := m.disks.Take(ctx)
		if err != nil {
			return fmt.Errorf("sandbox disk: %w", err)
		}
		if _, err := d.MoveInto(dir); err != nil {
			d.Destroy()
			return fmt.Errorf("sandbox disk: %w", err)
		}
		mnt := filepath.Join(dir, disk.MountDir)
		defer unmountAll(mnt)
		// A new disk may come with an empty upper layer of its own.
		os.RemoveAll(filepath.Join(mnt, "upper"))
		if err := os.MkdirAll(filepath.Join(mnt, "work"), 0o755); err != nil {
			return err
		}
		upper = filepath.Join(mnt, "upper")
	}
	if err := m.remote.getTree(ctx, idx.Upper, upper, m.shift()); err != nil {
		return fmt.Errorf("files: %w", err)
	}
	if idx.Memory != nil {
		if err := m.remote.getTree(ctx, *idx.Memory, filepath.Join(dir, checkpointDir), 0); err != nil {
			return fmt.Errorf("memory image: %w", err)
		}
	}
	return nil
}

// clearDir removes sandbox directory dir, unmounting what is mounted there.
func (m *Manager) clearDir(dir string) {
	if err := unmountRootfs(dir); err != nil {
		m.log.Error("clear sandbox dir", "dir", dir, "err", err)
		return
	}
	os.RemoveAll(dir)
}

// ReleaseMoved frees what this node holds of sandbox id, which another
// node has taken over (Adopt there): its box, network and directory. Its
// record, now the other node's, is not touched.
func (r RemoteUse) ReleaseMoved(ctx context.Context, id string) error {
	m := r.m
	if m.cfg.Fleet == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, "no fleet")
	}
	unlock := m.lock(id)
	defer unlock()
	sb, err := m.cfg.Fleet.GetSandbox(ctx, id)
	if err != nil {
		return err
	}
	if sb.Node == m.db.Node() {
		return errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is still this node's", id)
	}
	m.release(ctx, sb)
	m.hooks().gone(id)
	m.log.Info("released a sandbox another node took over", "sandbox_id", id, "node", sb.Node)
	return nil
}

// dropPublished removes sandbox id's paused copy from the bucket, once it
// is gone.
func (m *Manager) dropPublished(ctx context.Context, id string) {
	if m.remote == nil {
		return
	}
	if err := m.remote.r.Delete(ctx, pausedKey(id)); err != nil {
		m.log.Warn("remove a paused sandbox's copy from the object store", "sandbox_id", id, "err", err)
	}
}

// HasObjectStore reports whether this Manager copies paused sandboxes and
// snapshots to an object store, so that other nodes can take them over.
func (r RemoteUse) HasObjectStore() bool { return r.m.remote != nil }

// CanCheckpoint reports whether runtime rt saves a box's memory on pause
// (a Checkpointer): only such a pause takes memory to another node.
func (r RemoteUse) CanCheckpoint(rt string) bool {
	_, ok := r.m.cfg.Runtimes[rt].(Checkpointer)
	return ok
}

// Recovered is what [RemoteUse.Recover] brought back of a lost node's
// sandbox, and from which copy.
type Recovered struct {
	Sandbox *Sandbox
	// From is the node the sandbox was lost with.
	From string
	// CopyAt is when the copy was made: what the sandbox did after that
	// is lost.
	CopyAt time.Time
	// Copy names the copy: "snapshot <id>", "paused image" (files only) or
	// "checkpoint" (memory and files).
	Copy string
	// Memory says whether the copy holds the sandbox's memory (its
	// processes come back as they were at CopyAt).
	Memory bool
}

// Lost states what a sandbox recovered from rc lost: it goes into the
// event of its recovery.
func (rc *Recovered) Lost() string {
	what := "its processes and memory, and every file written after that"
	if rc.Memory {
		what = "what its processes did and wrote after that"
	}
	return fmt.Sprintf("node %s lost; recovered from its %s of %s: %s is lost",
		rc.From, rc.Copy, rc.CopyAt.UTC().Format(time.RFC3339), what)
}

// Recover brings persistent sandbox id of a node that is down (declared
// lost, or stopped: its lease lapsed) back on this node from its newest
// copy in the object store: the copy of its last pause (files only, or a
// checkpoint with its memory) or its latest snapshot, whichever is newer.
// It ends paused here, with the copy's memory image when it has one
// (runsc), its files only otherwise; Resume runs it. The move is one
// compare-and-set (store's MoveSandboxFromDown) that also checks the node
// is still down, so that of two nodes recovering one sandbox one wins and
// a node that came back keeps its own. A sandbox with no copy, or with
// volume mounts (they stayed on its node), is an
// errdefs.ErrFailedPrecondition.
func (r RemoteUse) Recover(ctx context.Context, id string) (*Recovered, error) {
	m := r.m
	if m.remote == nil || m.cfg.Fleet == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q: this node has no object store to recover it from", id)
	}
	unlock := m.lock(id)
	defer unlock()
	sb, err := m.cfg.Fleet.GetSandbox(ctx, id)
	if err != nil {
		return nil, err
	}
	self := m.db.Node()
	switch {
	case sb.Node == self:
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is this node's", id)
	case !sb.Life.Persistent:
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is not persistent: it is not recovered", id)
	case sb.State == StateKilled || sb.State == StateFailed:
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s", id, sb.State)
	}
	if vs, err := m.db.SandboxVolumes(ctx, id); err != nil {
		return nil, err
	} else if len(vs) > 0 {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q mounts volumes, which were on node %s: it cannot come back elsewhere", id, sb.Node)
	}
	idx, err := m.latestCopy(ctx, sb)
	if err != nil {
		return nil, err
	}
	dir := m.dir(id)
	if _, err := os.Stat(dir); err == nil {
		m.release(ctx, sb)
	}
	if err := m.layOut(ctx, sb, idx); err != nil {
		m.clearDir(dir)
		return nil, fmt.Errorf("recover sandbox %s: %w", id, err)
	}
	rc := &Recovered{From: sb.Node, CopyAt: idx.PausedAt, Copy: idx.source, Memory: idx.Memory != nil}
	sb.State = StatePaused
	sb.Life.PauseKind, sb.Life.PausedAt = PauseFilesystem, time.Now().UTC()
	if rc.Memory {
		sb.Life.PauseKind = PauseMemory
	}
	if err := m.cfg.Fleet.MoveSandboxFromDown(ctx, sb, self, time.Now()); err != nil {
		m.clearDir(dir)
		return nil, err
	}
	rc.Sandbox = sb
	m.log.Warn("recovered a sandbox of a node that is down from its newest copy; what it did since is lost", "sandbox_id", id, "from_node", rc.From, "copy", rc.Copy, "copy_at", rc.CopyAt, "kind", sb.Life.PauseKind)
	return rc, nil
}

// RecoverLost recovers persistent sandbox id of a lost node (Recover) and
// runs it here with the time it had left (the server default when none),
// its resume event stating what was lost.
func (r RemoteUse) RecoverLost(ctx context.Context, id string) (*Recovered, error) {
	rc, err := r.Recover(ctx, id)
	if err != nil {
		return nil, err
	}
	opts := ResumeOptions{}
	if end := rc.Sandbox.EndAt; !end.IsZero() {
		left := time.Until(end)
		if left < time.Minute {
			left = time.Minute // it was running when its node was lost
		}
		opts.Timeout = &left
	}
	sb, _, err := r.m.Resume(withReason(ctx, rc.Lost()), id, opts)
	if err != nil {
		return rc, fmt.Errorf("resume sandbox %s, recovered paused: %w", id, err)
	}
	rc.Sandbox = sb
	return rc, nil
}

// latestCopy is the newest copy of sandbox sb in the object store: of its
// last pause, or its latest snapshot (as a pause's copy). None is
// errdefs.ErrFailedPrecondition.
func (m *Manager) latestCopy(ctx context.Context, sb *store.Sandbox) (*pausedIndex, error) {
	var best *pausedIndex
	var idx pausedIndex
	if err := m.remote.getJSON(ctx, pausedKey(sb.ID), &idx); err == nil && idx.SandboxID == sb.ID {
		best = &idx
		best.source = "paused image"
		if idx.Memory != nil {
			best.source = "checkpoint"
		}
	} else if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	snaps, err := m.cfg.Fleet.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	for i := len(snaps) - 1; i >= 0; i-- { // newest first
		sn := snaps[i]
		if sn.SandboxID != sb.ID || sn.State != "ready" || (best != nil && !sn.CreatedAt.After(best.PausedAt)) {
			continue
		}
		var si snapshotIndex
		if err := m.remote.getJSON(ctx, snapshotKey(sn.ID), &si); err != nil {
			continue // not in the bucket (or gone meanwhile)
		}
		best = &pausedIndex{SandboxID: sb.ID, Node: sn.Node, PausedAt: sn.CreatedAt, Kind: PauseFilesystem, Upper: si.Layer, Memory: si.Memory, source: "snapshot " + sn.ID}
		break
	}
	if best == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q has no copy in the object store (it was never paused or snapshotted with one)", sb.ID)
	}
	return best, nil
}
