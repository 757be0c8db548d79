package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
)

// Node loss. Every fleet node (--advertise) watches the other fleet nodes' leases
// (lossWatch): a node whose lease lapsed without a release (a clean stop
// releases it: that node is gone, and its boxes wait for it) is declared
// lost with a compare-and-set on the lease it was seen holding, so that of
// several nodes noticing at once one declares it. Then any live node
// settles the lost node's sandboxes, each with the lifecycle's own
// compare-and-set and its event: running ones fail with the reason "node
// NAME lost", pending ones (creating, pausing, resuming) are killed.
// Persistent sandboxes that ran come back on the node that declared the
// loss (any live node, if that one is gone too), running, from their
// newest copy in the object store (RemoteUse.RecoverLost; the move is a
// compare-and-set that also checks the node is still down, so one node
// wins), their resume event saying what was lost; one with no copy, with
// volume mounts, or in a fleet without an object store fails with the
// reason. Paused ones wait in the object store for a resume through any
// node.
//
// A node that cannot renew its lease for a whole lease period is fenced:
// it answers every request but /health with 503 and declares no other node
// lost, since the fleet may be settling its own sandboxes meanwhile. When
// a renewal succeeds again and tells it it was declared lost, and at every
// start, it kills the boxes of its sandboxes that the fleet ended
// (Manager.KillLost) before it serves them again.

// lossScan is how often a node looks for lapsed leases.
const lossScan = 2 * time.Second

// lossStore is what the loss watcher needs of the shared store (the whole
// database).
type lossStore interface {
	ListNodes(ctx context.Context) ([]*store.Node, error)
	DeclareNodeLost(ctx context.Context, id, by string, leaseUntil, at time.Time) (bool, error)
	NodeSandboxes(ctx context.Context, node string, states ...store.State) ([]*store.Sandbox, error)
	GetSandbox(ctx context.Context, id string) (*store.Sandbox, error)
	sandbox.LostStore
}

// lossWatch declares lapsed nodes lost and settles their sandboxes.
type lossWatch struct {
	self   string
	db     lossStore
	lease  interface{ fenced() bool }
	events sandbox.EventSink // told of each event stored; may be nil
	log    *slog.Logger
	now    func() time.Time
	// recover runs a lost node's persistent sandbox here from its newest
	// copy (RemoteUse.RecoverLost); nil without an object store.
	recover func(ctx context.Context, id string) (*sandbox.Recovered, error)

	mu         sync.Mutex
	recovering map[string]bool // ids being recovered by this node
	wg         sync.WaitGroup  // the recoveries
}

// recoverTimeout bounds one recovery: the copy's download and the resume.
const recoverTimeout = 5 * time.Minute

// run scans every lossScan until ctx ends.
func (w *lossWatch) run(ctx context.Context) {
	t := time.NewTicker(lossScan)
	defer t.Stop()
	defer w.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sctx, cancel := context.WithTimeout(ctx, leaseRenew)
			err := w.scan(sctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				w.log.Warn("node loss: scan", "err", err)
			}
		}
	}
}

// unsettled are the states of a lost node's sandboxes that SettleLost
// moves.
var unsettled = []store.State{store.State(sandbox.StateRunning), store.State(sandbox.StateCreating), store.State(sandbox.StatePausing), store.State(sandbox.StateResuming)}

// scan declares each lapsed node lost and settles each lost node's
// sandboxes.
func (w *lossWatch) scan(ctx context.Context) error {
	if w.lease != nil && w.lease.fenced() {
		return nil // this node is the one cut off, as far as it can tell
	}
	nodes, err := w.db.ListNodes(ctx)
	if err != nil {
		return err
	}
	now := w.now()
	live := map[string]bool{}
	for _, n := range nodes {
		if n.LostAt.IsZero() && n.LeaseUntil.After(now) {
			live[n.ID] = true
		}
	}
	for _, n := range nodes {
		if n.ID == w.self || n.Advertise == "" {
			// A node outside the fleet (no --advertise) serves its
			// own sandboxes only: no other node can stand in for it,
			// and its boxes outlive a crash for its restart.
			continue
		}
		if n.LostAt.IsZero() && n.ReleasedAt.IsZero() && n.LeaseUntil.Before(now) {
			won, err := w.db.DeclareNodeLost(ctx, n.ID, w.self, n.LeaseUntil, now)
			if err != nil {
				return err
			}
			if !won {
				// Another node declared it (or it renewed): the next
				// scan reads who, and whether it is still lost.
				continue
			}
			w.log.Warn("node lost: its lease lapsed", "node", n.ID, "lease_until", n.LeaseUntil, "renewed_at", n.RenewedAt)
			n.LostAt, n.LostBy = now, w.self
		}
		if n.LostAt.IsZero() || n.LeaseUntil.After(now) {
			// Not lost, or back and settling its boxes itself (it
			// clears the declaration once done): nothing to end.
			continue
		}
		// The declaring node recovers the persistent sandboxes, or any
		// node once that one is gone too (the compare-and-set picks one).
		recovers := n.LostBy == w.self || !live[n.LostBy]
		if err := w.settle(ctx, n.ID, recovers); err != nil {
			return err
		}
	}
	return nil
}

// settle ends lost node's unsettled sandboxes, and recovers its
// persistent ones that ran when recovers.
func (w *lossWatch) settle(ctx context.Context, node string, recovers bool) error {
	sbs, err := w.db.NodeSandboxes(ctx, node, unsettled...)
	if err != nil {
		return err
	}
	reason := "node " + node + " lost"
	for _, sb := range sbs {
		if sb.Life.Persistent && sb.State != sandbox.StateCreating {
			switch {
			case !recovers:
			case w.recover == nil:
				if err := w.end(ctx, sb, reason+"; not recovered: the fleet has no object store to keep copies in"); err != nil {
					return err
				}
			default:
				w.startRecovery(ctx, sb.ID, reason)
			}
			continue
		}
		if err := w.end(ctx, sb, reason); err != nil {
			return err
		}
	}
	return nil
}

// end settles lost sandbox sb (SettleLost) for reason.
func (w *lossWatch) end(ctx context.Context, sb *store.Sandbox, reason string) error {
	from := sb.State
	ev, err := sandbox.SettleLost(ctx, w.db, sb, reason)
	switch {
	case errors.Is(err, errdefs.ErrConflict), errors.Is(err, errdefs.ErrNotFound):
		return nil // another node settled it, or the node came back
	case err != nil:
		return err
	case ev == nil:
		return nil
	}
	if w.events != nil {
		w.events.Stored(ev)
	}
	w.log.Warn("sandbox of a lost node ended", "sandbox_id", sb.ID, "node", sb.Node, "from", from, "to", sb.State, "reason", reason)
	return nil
}

// startRecovery recovers lost sandbox id here in the background, unless
// that is under way; a sandbox that cannot be recovered fails with why.
func (w *lossWatch) startRecovery(ctx context.Context, id, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.recovering[id] {
		return
	}
	if w.recovering == nil {
		w.recovering = map[string]bool{}
	}
	w.recovering[id] = true
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { w.mu.Lock(); delete(w.recovering, id); w.mu.Unlock() }()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoverTimeout)
		defer cancel()
		t0 := time.Now()
		rc, err := w.recover(rctx, id)
		switch {
		case err == nil:
			w.log.Warn("sandbox of a lost node recovered here", "sandbox_id", id, "from_node", rc.From, "copy", rc.Copy, "copy_at", rc.CopyAt, "memory", rc.Memory, "state", rc.Sandbox.State, "seconds", time.Since(t0).Seconds())
		case rc != nil:
			// Moved here, but it would not run: it stays paused here.
			w.log.Error("sandbox of a lost node recovered here, but not resumed", "sandbox_id", id, "err", err)
		case errors.Is(err, errdefs.ErrConflict), errors.Is(err, errdefs.ErrNotFound):
			// Another node recovered it, or its node came back.
		case errors.Is(err, errdefs.ErrFailedPrecondition):
			sb, gerr := w.db.GetSandbox(rctx, id)
			if gerr == nil {
				gerr = w.end(rctx, sb, reason+"; not recovered: "+errdefs.Message(err))
			}
			if gerr != nil {
				w.log.Warn("node loss: fail a sandbox that cannot be recovered", "sandbox_id", id, "err", gerr)
			}
		default:
			w.log.Warn("node loss: recover a sandbox (retried at the next scan)", "sandbox_id", id, "err", err)
		}
	}()
}

// foreignBoxes returns the records, owned by another node, of the
// sandboxes whose directories are in dataDir: a sandbox that now lives
// elsewhere, whose box must not run here.
func foreignBoxes(ctx context.Context, db interface {
	GetSandbox(ctx context.Context, id string) (*store.Sandbox, error)
}, dataDir, self string) ([]*store.Sandbox, error) {
	entries, err := os.ReadDir(filepath.Join(dataDir, "sandboxes"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*store.Sandbox
	for _, e := range entries {
		sb, err := db.GetSandbox(ctx, e.Name())
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if sb.Node != self && sb.Node != "" {
			out = append(out, sb)
		}
	}
	return out, nil
}

// fence answers 503 while the node is fenced (see above), /health aside.
type fence struct {
	lease *nodeLease
	next  http.Handler
	log   *slog.Logger
}

func (f fence) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.lease.fenced() && r.URL.Path != "/health" {
		errhttp.Write(w, r, f.log, errdefs.New(errdefs.ErrUnavailable, "node %s cannot renew its lease in the shared store; it serves nothing until it can", f.lease.node.ID))
		return
	}
	f.next.ServeHTTP(w, r)
}
