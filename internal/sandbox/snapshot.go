package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/wire"
)

// Snapshots.
//
// A snapshot is a running sandbox's files, and on a runtime that implements
// Checkpointer its memory too, captured at one moment:
//
//   - its files are a copy of the sandbox's overlay upper layer, taken while
//     the box is frozen (for the copy's duration only), kept read-only under
//     DataDir/snapshots/ID/layer. Sandboxes made from it mount it as a shared
//     lower layer above the template's, under an upper layer of their own, so
//     unchanged data is stored once however many sandboxes use it;
//   - its memory image (DataDir/snapshots/ID/memory) is restored by every
//     sandbox made from it and never written.
//
// A snapshot is used by name like a template (E2B's Sandbox.create(snapshotID))
// and lives until it is deleted; one that sandboxes or other snapshots stand
// on cannot be (409). A fork is a snapshot made for the purpose (internal:
// not listed) and N sandboxes made from it; it goes with the last of them.
//
// Threat: snapshots are written outside the sandboxes' disk quotas, on the
// host's data directory. Each is at most one sandbox's disk in size, and only
// API key holders can make them; operators bound them with the disk they give
// the data directory (docs/operations.md).

// Snapshot kinds.
const (
	SnapshotFiles  = "files"
	SnapshotMemory = "memory"
)

// Snapshot is a snapshot as the API sees it.
type Snapshot = store.Snapshot

// Snapshots takes snapshots of running sandboxes, lists and deletes them,
// resolves them as templates for creates, and makes forks: snapshots made
// for the purpose and the sandboxes made from them. Reach it through
// [Manager.Snapshots]. It is safe for concurrent use.
type Snapshots struct {
	dataDir   string
	db        snapshotStore
	templates Templates
	log       *slog.Logger
	maxFork   int
	// tplMu is the Manager's template lock: a snapshot is deleted only
	// while no sandbox is being made from it.
	tplMu *sync.RWMutex
	// sandboxes is what of the Manager snapshots and forks need.
	sandboxes snapshotSandboxes

	// mu serialises snapshot creation against snapshot removal.
	mu sync.Mutex

	// remote and fleet, when set, are the object store snapshots are
	// copied to and the fleet's store other nodes' snapshots are found in
	// (remote.go); shift is the owners' shift of snapshot layers.
	remote  *remoteTier
	fleet   Fleet
	shift   uint32
	fetchMu sync.Mutex
	// idmap is the boxes' id map, whom a snapshot's directory admits
	// (closeBoxDir).
	idmap *IDMap
}

// snapshotStore is what Snapshots keeps in the store (*store.DB).
type snapshotStore interface {
	GetSnapshot(ctx context.Context, ref string) (*store.Snapshot, error)
	PutSnapshot(ctx context.Context, sn *store.Snapshot) error
	DeleteSnapshot(ctx context.Context, id string) error
	ListSnapshots(ctx context.Context) ([]*store.Snapshot, error)
	CountSandboxesByTemplate(ctx context.Context, name string) (int, error)
	CountSnapshotsByTemplate(ctx context.Context, name string) (int, error)
	GetTeam(ctx context.Context, ref string) (*store.Team, error)
	ReserveSnapshot(ctx context.Context, sn *store.Snapshot, check func(t *store.Team, snapshots int64) error) error
}

// snapshotSandboxes is what Snapshots needs of the Manager (which
// implements it): a sandbox to capture, with its lock held, and creates for
// a fork's copies.
type snapshotSandboxes interface {
	// lockSandbox reads sandbox id's record under its lock; unlock lets
	// go of it.
	lockSandbox(ctx context.Context, id string) (sb *store.Sandbox, unlock func(), err error)
	runtimeOf(sb *store.Sandbox) (Runtime, error)
	// upperDir is the host path of sandbox id's overlay upper layer.
	upperDir(id string) string
	resolveTimeout(d *time.Duration) (time.Duration, error)
	Get(ctx context.Context, id string) (*Sandbox, error)
	Create(ctx context.Context, p CreateParams) (*Sandbox, error)
	forkPolicy(id string) (*network.Egress, error)
	// putEvent stores and announces a lifecycle event.
	putEvent(ctx context.Context, ev *store.Event)
	// volumeMounts are the volumes sandbox id mounts, which its forks
	// mount too.
	volumeMounts(ctx context.Context, id string) ([]VolumeMount, error)
}

const (
	snapshotsDir  = "snapshots"
	snapshotLayer = "layer"
	snapshotImage = "memory"
)

func (s *Snapshots) dir(id string) string {
	return filepath.Join(s.dataDir, snapshotsDir, id)
}

// resolveTemplate returns the template a sandbox of template name is made
// from: a template of the store, or a snapshot (its layer above the layers of
// what it was taken from).
func (s *Snapshots) resolveTemplate(ctx context.Context, name string) (Template, error) {
	return s.resolveDepth(ctx, name, 0)
}

func (s *Snapshots) resolveDepth(ctx context.Context, name string, depth int) (Template, error) {
	{
		sn, err := s.db.GetSnapshot(ctx, name)
		if errors.Is(err, errdefs.ErrNotFound) {
			// Another node's, in the object store.
			sn, err = s.fetchRemote(ctx, name)
		}
		if err == nil {
			if sn.State != "ready" {
				return Template{}, errdefs.New(errdefs.ErrNotFound, "snapshot %q not found", name)
			}
			// Overlayfs stacks at most 500 lower layers; snapshots of
			// sandboxes made from snapshots add one each.
			if depth > 100 {
				return Template{}, errdefs.New(errdefs.ErrFailedPrecondition, "snapshot %q stands on more than 100 snapshots", name)
			}
			tpl, err := s.resolveDepth(ctx, sn.Template, depth+1)
			if err != nil {
				return Template{}, fmt.Errorf("snapshot %s: %w", sn.ID, err)
			}
			tpl.Name = sn.ID
			tpl.Layers = append([]string{filepath.Join(s.dir(sn.ID), snapshotLayer)}, tpl.Layers...)
			tpl.image, tpl.runtime = "", ""
			if sn.Kind == SnapshotMemory {
				tpl.image = filepath.Join(s.dir(sn.ID), snapshotImage)
				tpl.runtime = sn.Runtime
			}
			if tpl.MemoryMB == 0 {
				tpl.MemoryMB = sn.MemoryMB
			}
			return tpl, nil
		}
		if !errors.Is(err, errdefs.ErrNotFound) {
			return Template{}, err
		}
	}
	return s.templates.Get(ctx, name)
}

const snapshotPrefix = "snap-"

// SnapshotOptions tune a snapshot.
type SnapshotOptions struct {
	// Name is an optional second handle ([a-z0-9][a-z0-9._-]{0,62}, not a
	// template's or another snapshot's).
	Name string
	// internal marks a fork's snapshot.
	internal bool
}

// Take captures running sandbox id; the box is frozen only while its
// state is copied.
func (s *Snapshots) Take(ctx context.Context, id string, opts SnapshotOptions) (*Snapshot, error) {
	if opts.Name != "" {
		if err := template.ValidateName(opts.Name); err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "invalid snapshot name %q: want [a-z0-9][a-z0-9._-]{0,62}", opts.Name)
		}
	}
	sb, unlock, err := s.sandboxes.lockSandbox(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	switch sb.State {
	case StateRunning:
	case StateKilled:
		return nil, errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", id)
	default:
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s; only a running sandbox can be snapshotted", id, sb.State)
	}
	rt, err := s.sandboxes.runtimeOf(sb)
	if err != nil {
		return nil, err
	}
	kind := SnapshotFiles
	if _, ok := rt.(Checkpointer); ok {
		kind = SnapshotMemory
	}
	sn := &store.Snapshot{
		ID:        snapshotPrefix + newID()[:15],
		Name:      opts.Name,
		SandboxID: sb.ID,
		Template:  sb.Template,
		Kind:      kind,
		State:     "creating",
		Internal:  opts.internal,
		CreatedAt: time.Now().UTC(),
		CPUs:      sb.CPUs,
		MemoryMB:  sb.MemoryMB,
		Runtime:   sb.Runtime,
		Team:      sb.Team,
	}
	if err := s.reserve(ctx, sn); err != nil {
		return nil, err
	}
	log := s.log.With("sandbox_id", id, "snapshot_id", sn.ID, "kind", kind)
	t0 := time.Now()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	frozen, err := s.capture(cctx, sb, rt, sn)
	if err != nil {
		log.Error("snapshot failed", "err", err)
		os.RemoveAll(s.dir(sn.ID))
		if derr := s.db.DeleteSnapshot(cctx, sn.ID); derr != nil {
			log.Error("delete snapshot record", "err", derr)
		}
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "snapshot of sandbox %q failed", id)
	}
	sn.State = "ready"
	if err := s.db.PutSnapshot(cctx, sn); err != nil {
		return nil, err
	}
	if s.remote != nil && !opts.internal {
		// Before the answer, so that a create from it on any node right
		// after finds it. A failure leaves it usable on this node only.
		if err := s.publish(cctx, sn); err != nil {
			log.Error("publishing the snapshot to the object store failed; only this node can use it", "err", err)
		}
	}
	log.Info("snapshot taken", "took", time.Since(t0), "frozen", frozen, "bytes", sn.SizeBytes)
	if !opts.internal {
		s.sandboxes.putEvent(cctx, newEvent(sb, wire.EventCheckpointed, wire.SandboxEventData{Reason: reasonOf(ctx), SnapshotID: sn.ID}))
	}
	return sn, nil
}

// reserve stores sn (state creating) unless its name is taken or its
// team is at its limit of templates (checked under the team's lock in the
// store, so that racing snapshots on any node sharing it never pass it).
func (s *Snapshots) reserve(ctx context.Context, sn *store.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sn.Name != "" {
		if _, err := s.db.GetSnapshot(ctx, sn.Name); err == nil {
			return errdefs.New(errdefs.ErrConflict, "a snapshot named %q exists; delete it first", sn.Name)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		if _, err := s.templates.Get(ctx, sn.Name); err == nil {
			return errdefs.New(errdefs.ErrConflict, "%q is a template's name", sn.Name)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
	}
	if sn.Internal {
		return s.db.PutSnapshot(ctx, sn)
	}
	return s.db.ReserveSnapshot(ctx, sn, checkTemplates)
}

// checkTemplates refuses a new snapshot of team t when it has n, as many
// as its limit of templates (max-templates): E2B's snapshots are
// templates of the team.
func checkTemplates(t *store.Team, n int64) error {
	if t.Limits.MaxTemplates > 0 && n >= t.Limits.MaxTemplates {
		return errdefs.New(errdefs.ErrResourceExhausted, "team %q is at its limit of %d templates and snapshots (max-templates); delete one first", t.Name, t.Limits.MaxTemplates)
	}
	return nil
}

// capture writes sb's state into sn's directory and returns how long
// the box was frozen.
func (s *Snapshots) capture(ctx context.Context, sb *store.Sandbox, rt Runtime, sn *store.Snapshot) (time.Duration, error) {
	dir := s.dir(sn.ID)
	// Boxes resolve their lower layers as their mapped root, an
	// unprivileged host uid: 0711 on the way down, then the snapshot's own
	// directory, which holds the box's files (set-uid ones too), for root
	// and the boxes' ids only.
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return 0, err
	}
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	if err := closeBoxDir(dir, s.idmap); err != nil {
		return 0, err
	}
	upper := s.sandboxes.upperDir(sb.ID)
	tmp := filepath.Join(dir, snapshotLayer+".tmp")
	t0 := time.Now()
	if sn.Kind == SnapshotMemory {
		// The runtime saves the box's memory and lets it run on (it
		// pauses the box while it writes); the files are copied right
		// after, frozen again, so they hold at most the few writes made
		// between the two.
		img := filepath.Join(dir, snapshotImage)
		if err := os.Mkdir(img, 0o700); err != nil {
			return 0, err
		}
		if err := rt.(Checkpointer).Checkpoint(ctx, sb.ID, img, true); err != nil {
			return time.Since(t0), fmt.Errorf("checkpoint: %w", err)
		}
		// Every sandbox made from the snapshot restores from these files;
		// none may change them.
		if err := readOnlyTree(img); err != nil {
			return time.Since(t0), err
		}
	}
	if err := rt.Pause(ctx, sb.ID); err != nil {
		return time.Since(t0), fmt.Errorf("freeze: %w", err)
	}
	err := copyTree(ctx, upper, tmp)
	frozen := time.Since(t0)
	if rerr := rt.Resume(ctx, sb.ID); rerr != nil {
		err = errors.Join(err, fmt.Errorf("thaw: %w", rerr))
	}
	if err != nil {
		return frozen, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, snapshotLayer)); err != nil {
		return frozen, err
	}
	sn.SizeBytes = diskUsage(dir)
	return frozen, nil
}

// copyTree copies directory src to dst (which must not exist) with owners,
// modes, times, extended attributes (overlayfs's opaque markers) and device
// nodes (its whiteouts), sharing blocks where the filesystem can (reflinks).
func copyTree(ctx context.Context, src, dst string) error {
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %v: %s", src, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// diskUsage is the bytes of disk the files under dir take.
func diskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := statBlocks(info); ok {
				n += st
			}
		}
		return nil
	})
	return n
}

// Get returns the snapshot whose id or name is ref: this node's, or, with
// an object store, another node's (which a create here would fetch).
func (s *Snapshots) Get(ctx context.Context, ref string) (*Snapshot, error) {
	sn, err := s.db.GetSnapshot(ctx, ref)
	if errors.Is(err, errdefs.ErrNotFound) && s.remote != nil && s.fleet != nil {
		sn, err = s.fleet.GetSnapshot(ctx, ref)
	}
	if err != nil {
		return nil, err
	}
	if sn.State != "ready" {
		return nil, errdefs.New(errdefs.ErrNotFound, "snapshot %q not found", ref)
	}
	return sn, nil
}

// getLocal returns this node's snapshot whose id or name is ref.
func (s *Snapshots) getLocal(ctx context.Context, ref string) (*Snapshot, error) {
	sn, err := s.db.GetSnapshot(ctx, ref)
	if err != nil {
		return nil, err
	}
	if sn.State != "ready" {
		return nil, errdefs.New(errdefs.ErrNotFound, "snapshot %q not found", ref)
	}
	return sn, nil
}

// List returns the snapshots (not a fork's own), oldest first,
// of sandbox sandboxID when it is not empty.
func (s *Snapshots) List(ctx context.Context, sandboxID string) ([]*Snapshot, error) {
	all, err := s.db.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Snapshot
	for _, sn := range all {
		if sn.State == "ready" && !sn.Internal && (sandboxID == "" || sn.SandboxID == sandboxID) {
			out = append(out, sn)
		}
	}
	return out, nil
}

// Delete deletes the snapshot whose id or name is ref, unless a
// sandbox or another snapshot stands on it (errdefs.ErrConflict).
func (s *Snapshots) Delete(ctx context.Context, ref string) error {
	s.tplMu.Lock()
	defer s.tplMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, err := s.getLocal(ctx, ref)
	if err != nil {
		return err
	}
	return s.deleteLocked(ctx, sn)
}

func (s *Snapshots) deleteLocked(ctx context.Context, sn *store.Snapshot) error {
	counter := snapshotCounter(s.db)
	if s.fleet != nil {
		counter = s.fleet // sandboxes of other nodes stand on it too
	}
	n, err := counter.CountSandboxesByTemplate(ctx, sn.ID)
	if err != nil {
		return err
	}
	k, err := s.db.CountSnapshotsByTemplate(ctx, sn.ID)
	if err != nil {
		return err
	}
	if n > 0 || k > 0 {
		return errdefs.New(errdefs.ErrConflict, "snapshot %q is used by %d sandbox(es) and %d snapshot(s)", sn.ID, n, k)
	}
	// The record first: a snapshot directory without one is removed at
	// the next start.
	if err := s.db.DeleteSnapshot(ctx, sn.ID); err != nil {
		return err
	}
	s.unpublish(ctx, sn.ID)
	if err := os.RemoveAll(s.dir(sn.ID)); err != nil {
		s.log.Error("remove snapshot dir", "snapshot_id", sn.ID, "err", err)
	}
	s.log.Info("snapshot deleted", "snapshot_id", sn.ID)
	return nil
}

// dropUnused deletes fork snapshot name once nothing uses it.
func (s *Snapshots) dropUnused(ctx context.Context, name string) {
	if !strings.HasPrefix(name, snapshotPrefix) {
		return
	}
	s.tplMu.Lock()
	defer s.tplMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, err := s.db.GetSnapshot(ctx, name)
	if err != nil || !sn.Internal {
		return
	}
	if err := s.deleteLocked(ctx, sn); err != nil && !errors.Is(err, errdefs.ErrConflict) {
		s.log.Error("drop fork snapshot", "snapshot_id", sn.ID, "err", err)
	}
}

// ForkResult is the outcome of one copy of a fork: a sandbox or an error.
type ForkResult struct {
	Sandbox *Sandbox
	Err     error
}

// Fork makes n copies of running sandbox id that continue from its current
// state independently (its files; with a Checkpointer runtime its
// processes and memory too). The copies start from one snapshot; each
// succeeds or fails on its own. timeout is each copy's time to live.
func (s *Snapshots) Fork(ctx context.Context, id string, n int, timeout *time.Duration) ([]ForkResult, error) {
	if n < 1 || n > s.maxFork {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "count must be between 1 and %d (the server's fork limit)", s.maxFork)
	}
	if _, err := s.sandboxes.resolveTimeout(timeout); err != nil {
		return nil, err
	}
	src, err := s.sandboxes.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	policy, err := s.sandboxes.forkPolicy(id)
	if err != nil {
		return nil, err
	}
	// A fork shares its source's volumes (the same volumes at the same
	// paths), it does not copy them: a memory image restores into a box
	// with the mounts it was taken with.
	vols, err := s.sandboxes.volumeMounts(ctx, id)
	if err != nil {
		return nil, err
	}
	sn, err := s.Take(ctx, id, SnapshotOptions{internal: true})
	if err != nil {
		return nil, err
	}
	life := src.Life
	life.PauseKind, life.PausedAt = "", time.Time{}
	out := make([]ForkResult, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			sb, err := s.sandboxes.Create(ctx, CreateParams{
				Template:  sn.ID,
				Timeout:   timeout,
				Metadata:  src.Metadata,
				EnvVars:   src.EnvVars,
				Lifecycle: life,
				Network:   policy,
				Volumes:   vols,
				Team:      src.Team,
			})
			out[i] = ForkResult{Sandbox: sb, Err: err}
		}()
	}
	wg.Wait()
	s.dropUnused(context.WithoutCancel(ctx), sn.ID)
	return out, nil
}

// reconcile removes snapshots whose capture was interrupted, and
// snapshot directories without a record.
func (s *Snapshots) reconcile(ctx context.Context) error {
	all, err := s.db.ListSnapshots(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, sn := range all {
		if sn.State != "ready" {
			if err := s.db.DeleteSnapshot(ctx, sn.ID); err != nil {
				return err
			}
			s.log.Info("removed interrupted snapshot", "snapshot_id", sn.ID)
			continue
		}
		known[sn.ID] = true
	}
	entries, err := os.ReadDir(filepath.Join(s.dataDir, snapshotsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if !known[e.Name()] && !s.fetched(ctx, e.Name()) {
			if err := os.RemoveAll(filepath.Join(s.dataDir, snapshotsDir, e.Name())); err != nil {
				s.log.Error("remove stray snapshot dir", "path", e.Name(), "err", err)
			}
		}
	}
	// Fork snapshots left without sandboxes (the server stopped between
	// the fork and its copies) go too.
	for _, sn := range all {
		if sn.State == "ready" && sn.Internal {
			s.dropUnused(ctx, sn.ID)
		}
	}
	return nil
}

// snapshotCounter counts the sandboxes standing on a snapshot.
type snapshotCounter interface {
	CountSandboxesByTemplate(ctx context.Context, name string) (int, error)
}

// fetched reports whether directory name of the snapshots directory is
// another node's snapshot, fetched from the object store: it stays while
// the fleet has the snapshot.
func (s *Snapshots) fetched(ctx context.Context, name string) bool {
	if s.fleet == nil {
		return false
	}
	sn, err := s.fleet.GetSnapshot(ctx, name)
	return err == nil && sn.ID == name && sn.State == "ready"
}

// statBlocks is the disk space a file takes (its allocated blocks).
func statBlocks(info fs.FileInfo) (int64, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Blocks * 512, true
}

// readOnlyTree takes write permission off every file and directory under
// dir.
func readOnlyTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chmod(p, info.Mode().Perm()&^0o222)
	})
}
