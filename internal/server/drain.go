package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// A drain empties this node of the fleet before it is taken down:
//
//  1. the node is marked draining in the store: placement passes it over;
//  2. each persistent sandbox (lifecycle.persistent) that runs is paused,
//     with its memory where the runtime checkpoints (runsc) and with its
//     files only where it freezes (runc: frozen memory cannot leave the
//     host), and copied to the object store (the pause does it);
//  3. another node, in placement order, takes it over (POST
//     /fleet/adopt/{id}: it fetches the copy and moves the record to itself
//     with a compare-and-set) and resumes it there with the time it had
//     left; a paused one stays paused there;
//  4. this node frees what it held of each moved sandbox. One that no node
//     took runs on here as before (reported failed).
//
// Ephemeral sandboxes are left to end at their timeout, as E2B users
// expect of a sandbox nobody killed; the drain lists them.

// drainer drains this node (api.Drainer).
type drainer struct {
	self  string
	whole *store.DB // the fleet's store
	mine  *store.DB // this node's view
	mgr   *sandbox.Manager
	f     *fleetRouter
	// bg outlives requests: a drain started by a status change runs in it.
	bg  context.Context
	log *slog.Logger

	mu sync.Mutex // one drain at a time
}

// drainTimeout bounds a drain started in the background.
const drainTimeout = 30 * time.Minute

// SetStatus marks this node draining (and drains it in the background) or
// ready again.
func (d *drainer) SetStatus(ctx context.Context, node, status string) error {
	if node != d.self {
		return d.notSelf(ctx, node)
	}
	if status == "ready" {
		return d.whole.SetNodeDraining(ctx, d.self, time.Time{})
	}
	if err := d.mark(ctx); err != nil {
		return err
	}
	go func() {
		ctx, cancel := context.WithTimeout(d.bg, drainTimeout)
		defer cancel()
		if _, err := d.Drain(ctx, d.self); err != nil {
			d.log.Error("drain", "err", err)
		}
	}()
	return nil
}

// notSelf answers a request for another node that reached this one.
func (d *drainer) notSelf(ctx context.Context, node string) error {
	if _, err := d.whole.GetNode(ctx, node); err != nil {
		return err
	}
	return errdefs.New(errdefs.ErrUnavailable, "node %q could not be reached from node %s", node, d.self)
}

// mark records this node as draining, keeping when an earlier drain began.
func (d *drainer) mark(ctx context.Context) error {
	n, err := d.whole.GetNode(ctx, d.self)
	if err != nil {
		return err
	}
	if !n.DrainingSince.IsZero() {
		return nil
	}
	return d.whole.SetNodeDraining(ctx, d.self, time.Now().UTC())
}

// Drain drains this node and reports what became of each sandbox.
func (d *drainer) Drain(ctx context.Context, node string) (*wire.NodeDrain, error) {
	if node != d.self {
		return nil, d.notSelf(ctx, node)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.mark(ctx); err != nil {
		return nil, err
	}
	t0 := time.Now()
	list, err := d.mine.ListSandboxes(ctx, store.State(sandbox.StateRunning), store.State(sandbox.StatePaused))
	if err != nil {
		return nil, err
	}
	res := &wire.NodeDrain{Node: d.self, Moved: []wire.DrainedSandbox{}, Failed: []wire.DrainedSandbox{}, Remaining: []wire.DrainedSandbox{}}
	for _, sb := range list {
		if !sb.Life.Persistent {
			r := wire.DrainedSandbox{SandboxID: sb.ID, State: string(sb.State)}
			if !sb.EndAt.IsZero() {
				end := sb.EndAt
				r.EndAt = &end
			}
			res.Remaining = append(res.Remaining, r)
			continue
		}
		a, err := d.move(ctx, sb)
		if err != nil {
			d.log.Warn("drain: sandbox not moved", "sandbox_id", sb.ID, "err", err)
			res.Failed = append(res.Failed, wire.DrainedSandbox{SandboxID: sb.ID, Error: errdefs.Message(err)})
			continue
		}
		res.Moved = append(res.Moved, wire.DrainedSandbox{SandboxID: sb.ID, Node: a.Node, State: a.State})
	}
	d.log.Info("node drained", "moved", len(res.Moved), "failed", len(res.Failed), "remaining", len(res.Remaining), "took", time.Since(t0))
	return res, nil
}

// move hands persistent sandbox sb to another node.
func (d *drainer) move(ctx context.Context, sb *store.Sandbox) (*adoptAnswer, error) {
	if !d.mgr.Remote().HasObjectStore() {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "this node has no object store (--object-store) to move sandboxes through")
	}
	running := sb.State == sandbox.StateRunning
	var left time.Duration // 0: no limit
	if !sb.EndAt.IsZero() {
		left = max(time.Until(sb.EndAt), time.Second)
	}
	if running {
		memory := d.mgr.Remote().CanCheckpoint(sb.Runtime)
		if _, err := d.mgr.Pause(ctx, sb.ID, &memory); err != nil {
			return nil, fmt.Errorf("pause: %w", err)
		}
	}
	a, err := d.handOver(ctx, sb.ID, running, left)
	if err == nil {
		return a, nil
	}
	// Taken over all the same (the answer was lost, or the resume there
	// failed)? Then it is that node's.
	if cur, gerr := d.whole.GetSandbox(context.WithoutCancel(ctx), sb.ID); gerr == nil && cur.Node != d.self {
		d.release(ctx, sb.ID)
		return &adoptAnswer{Node: cur.Node, State: string(cur.State)}, nil
	}
	if running {
		if _, _, rerr := d.mgr.Resume(context.WithoutCancel(ctx), sb.ID, sandbox.ResumeOptions{Timeout: &left}); rerr != nil {
			err = errors.Join(err, fmt.Errorf("resume here again: %w", rerr))
		}
	}
	return nil, err
}

// handOver copies paused sandbox id to the object store (unless its pause
// did) and has the first node that will take it over.
func (d *drainer) handOver(ctx context.Context, id string, resume bool, left time.Duration) (*adoptAnswer, error) {
	if err := d.mgr.Remote().Publish(ctx, id); err != nil {
		return nil, err
	}
	cands, err := d.f.candidates(ctx, "") // any template: the sandbox brings its own
	if err != nil {
		return nil, err
	}
	err = errdefs.New(errdefs.ErrUnavailable, "no other node takes sandboxes")
	for _, n := range cands {
		if n.ID == d.self {
			continue
		}
		a, aerr := d.f.adoptOn(ctx, n, id, resume, left)
		if aerr == nil {
			d.release(ctx, id)
			d.log.Info("drain: sandbox moved", "sandbox_id", id, "to", n.ID, "state", a.State)
			return a, nil
		}
		d.log.Warn("drain: a node did not take a sandbox over", "sandbox_id", id, "node", n.ID, "err", aerr)
		err = aerr
		if cur, gerr := d.whole.GetSandbox(ctx, id); gerr == nil && cur.Node != d.self {
			return nil, aerr // it did, but its answer is an error: the caller sorts it out
		}
	}
	return nil, err
}

// release frees this node's copy of a sandbox another node took over.
func (d *drainer) release(ctx context.Context, id string) {
	if err := d.mgr.Remote().ReleaseMoved(context.WithoutCancel(ctx), id); err != nil {
		d.log.Error("drain: free a moved sandbox", "sandbox_id", id, "err", err)
	}
}
