package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/internal/store"
)

// The warm pool: sandboxes started ahead of the creates that will take them.
//
// A create that asks for nothing a started box has baked in (the default
// template, when it has no start command; the server's default runtime;
// the default CPU and memory) takes one that is already running with its
// agent answering. Only its record is filled in (metadata, timeout,
// lifecycle, traffic token), its egress policy set when the request has
// one, and its agent told the request's environment variables: a create
// then costs a few milliseconds instead of a runtime start. A background filler tops the
// pool up after each take, one sandbox at a time, so that a burst of
// creates past the pool's size starts its boxes as before, not behind a
// queue.
//
// Pooled sandboxes are stored in state creating: they are not listed and
// have no timeout, a restart of sbx serve removes them as interrupted
// creates (Reconcile), and Close kills them.
type warmPool struct {
	size int

	mu    sync.Mutex
	ready []pooled
	// cfgs holds the agent configuration of each sandbox being started
	// for the pool (noteConfig), until it joins ready.
	cfgs    map[string][]byte
	started bool
	closed  bool
	// held counts holdWarm calls in progress: the filler starts nothing
	// while it is not zero.
	held int
	// filling is held by the filler while it starts a sandbox: holdWarm
	// takes it to wait for one in flight.
	filling sync.Mutex
	kick    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

// pooled is a sandbox of the pool and the agent configuration it was
// started with.
type pooled struct {
	sb  *store.Sandbox
	cfg []byte
}

// StartWarm starts filling the warm pool (Config.WarmPool sandboxes); the
// server calls it once its templates are ready.
func (m *Manager) StartWarm() {
	w := m.warm
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return
	}
	w.started = true
	w.wg.Add(1)
	go m.fillWarm()
}

// fillWarm keeps the pool full until Close.
func (m *Manager) fillWarm() {
	w := m.warm
	defer w.wg.Done()
	backoff := time.Second
	for {
		w.filling.Lock()
		w.mu.Lock()
		need := !w.closed && w.held == 0 && len(w.ready) < w.size
		w.mu.Unlock()
		if !need {
			w.filling.Unlock()
			select {
			case <-w.kick:
				continue
			case <-w.done:
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		sb, err := m.create(ctx, CreateParams{}, nil, true)
		cancel()
		if err != nil {
			w.filling.Unlock()
			m.log.Warn("warm pool: start a sandbox", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, time.Minute)
				continue
			case <-w.done:
				return
			}
		}
		backoff = time.Second
		w.mu.Lock()
		cfg := w.cfgs[sb.ID]
		delete(w.cfgs, sb.ID)
		if w.closed || w.held > 0 {
			closed := w.closed
			w.mu.Unlock()
			m.discardWarm(sb)
			w.filling.Unlock()
			if closed {
				return
			}
			continue
		}
		w.ready = append(w.ready, pooled{sb: sb, cfg: cfg})
		w.mu.Unlock()
		w.filling.Unlock()
	}
}

// noteConfig records the agent configuration sandbox id, being started for
// the pool, was given: a create compares it with what it needs (the
// template's environment or user may change meanwhile).
func (w *warmPool) noteConfig(id string, cfg []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfgs == nil {
		w.cfgs = map[string][]byte{}
	}
	w.cfgs[id] = cfg
}

// wake tells the filler to look again whether the pool needs a sandbox.
func (w *warmPool) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// pop takes a pooled sandbox, if there is one, and wakes the filler.
func (w *warmPool) pop() (pooled, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return pooled{}, false
	}
	w.wake()
	if len(w.ready) == 0 {
		return pooled{}, false
	}
	p := w.ready[0]
	w.ready = w.ready[1:]
	return p, true
}

// takeWarm gives the create of want (its record as create built it, with
// a fresh id) a pooled sandbox when one fits: the pooled one keeps its id,
// tokens and box, and takes want's metadata, environment, lifecycle and
// times. It returns nil, nil when none fits or none is ready.
func (m *Manager) takeWarm(ctx context.Context, p CreateParams, tpl Template, want *store.Sandbox) (*Sandbox, error) {
	w := m.warm
	if w == nil || tpl.image != "" || len(tpl.StartCmd) > 0 || tpl.ReadyCmd != "" || tpl.ReadyPort != 0 {
		return nil, nil
	}
	for {
		pw, ok := w.pop()
		if !ok {
			return nil, nil
		}
		sb := pw.sb
		if sb.Template != want.Template || sb.Runtime != want.Runtime || sb.CPUs != want.CPUs ||
			sb.MemoryMB != want.MemoryMB || sb.DiskMB != want.DiskMB || sb.Pids != want.Pids {
			// Made for other defaults (a template changed meanwhile):
			// of no use to anyone.
			go m.discardWarm(sb)
			continue
		}
		got, err := m.assignWarm(ctx, pw, tpl, want, p.Network)
		if err != nil {
			m.log.Warn("warm pool: a pooled sandbox could not be handed out; discarded", "sandbox_id", sb.ID, "err", err)
			go m.discardWarm(sb)
			continue
		}
		return got, nil
	}
}

func (m *Manager) assignWarm(ctx context.Context, pw pooled, tpl Template, want *store.Sandbox, pol *network.Policy) (*Sandbox, error) {
	sb := pw.sb
	unlock := m.lock(sb.ID)
	defer unlock()
	// Still alive? (Nothing watches a pooled box.)
	_, f := m.openInit(sb.ID, m.initPid(sb.ID))
	if f == nil {
		return nil, fmt.Errorf("its box is gone")
	}
	f.Close()
	// The request's egress policy, before anything of the request's runs
	// in the sandbox (nothing has: it was started with the default one).
	if pol != nil && m.cfg.Network != nil {
		if err := m.cfg.Network.SetPolicy(ctx, sb.ID, *pol); err != nil {
			return nil, fmt.Errorf("egress policy: %w", err)
		}
	}
	// The request's environment variables, or a template whose defaults
	// changed since the box started: tell the agent.
	if cfg := agentConfigJSON(sb, tpl, want.EnvVars); !bytes.Equal(cfg, pw.cfg) {
		if err := m.configureAgent(ctx, sb, cfg); err != nil {
			return nil, err
		}
	}
	sb.Metadata, sb.EnvVars, sb.Life = want.Metadata, want.EnvVars, want.Life
	sb.CreatedAt, sb.StartedAt, sb.EndAt = want.CreatedAt, want.StartedAt, want.EndAt
	sb.TrafficToken = want.TrafficToken
	if err := m.created(ctx, sb); err != nil {
		return nil, err
	}
	m.log.Info("sandbox created", "sandbox_id", sb.ID, "template", sb.Template, "runtime", sb.Runtime, "warm", true)
	return sb, nil
}

// configureAgent gives sandbox sb's agent configuration cfg (see
// agentConfigJSON).
func (m *Manager) configureAgent(ctx context.Context, sb *store.Sandbox, cfg []byte) error {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return m.DialAgent(ctx, sb.ID) },
	}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+agentapi.ConfigurePath, bytes.NewReader(cfg))
	if err != nil {
		return err
	}
	req.Header.Set(agentapi.AccessTokenHeader, sb.EnvdToken)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("configure agent: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("configure agent: %s: %s", resp.Status, b)
	}
	return nil
}

// discardWarm kills a pooled sandbox.
func (m *Manager) discardWarm(sb *store.Sandbox) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unlock := m.lock(sb.ID)
	defer unlock()
	m.release(ctx, sb)
	if err := m.db.DeleteSandbox(ctx, sb.ID); err != nil {
		m.log.Error("warm pool: delete record", "sandbox_id", sb.ID, "err", err)
	}
	m.forget(sb.ID)
}

// holdWarm empties the warm pool and keeps it empty until release is
// called: no pooled sandbox, ready or being started, exists in between
// (template removal counts a template's sandboxes then).
func (m *Manager) holdWarm() (release func()) {
	w := m.warm
	if w == nil {
		return func() {}
	}
	w.mu.Lock()
	w.held++
	w.mu.Unlock()
	// A sandbox being started when the hold began is discarded by the
	// filler before it lets go of filling.
	w.filling.Lock()
	w.filling.Unlock()
	m.drainWarm(false)
	return func() {
		w.mu.Lock()
		w.held--
		w.mu.Unlock()
		w.wake()
	}
}

// drainWarm stops the filler for good (closing) or for a while, and kills
// the pooled sandboxes.
func (m *Manager) drainWarm(closing bool) {
	w := m.warm
	if w == nil {
		return
	}
	w.mu.Lock()
	drained := w.ready
	w.ready = nil
	if closing && !w.closed {
		w.closed = true
		close(w.done)
	}
	w.mu.Unlock()
	if closing {
		w.wg.Wait() // a sandbox being started is discarded by the filler
	}
	for _, p := range drained {
		m.discardWarm(p.sb)
	}
}
