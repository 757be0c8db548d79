package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
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
// then waits for no runtime start. A background filler tops the pool up
// after each take, one sandbox at a time, so that a burst of creates past
// the pool's size starts its boxes as before, not behind a queue.
//
// Pooled sandboxes are stored in state creating: they are not listed and
// have no timeout, a restart of sbx serve removes them as interrupted
// creates (Reconcile), and Close kills them.
//
// The pool (warmPool) keeps the pooled sandboxes and the filler; it starts
// and discards sandboxes through the two functions it is given, and knows
// nothing else of the Manager. Handing one out (takeWarm) is the Manager's.
type warmPool struct {
	size int
	// start makes a sandbox for the pool and returns it with the agent
	// configuration it was started with; discard kills one.
	start   func(ctx context.Context) (*store.Sandbox, []byte, error)
	discard func(sb *store.Sandbox)
	log     *slog.Logger

	mu      sync.Mutex
	ready   []pooled
	started bool
	closed  bool
	// held counts hold calls in progress: the filler starts nothing
	// while it is not zero.
	held int
	// filling is held by the filler while it starts a sandbox: hold
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

func newWarmPool(size int, start func(context.Context) (*store.Sandbox, []byte, error), discard func(*store.Sandbox), log *slog.Logger) *warmPool {
	return &warmPool{size: size, start: start, discard: discard, log: log, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// StartWarm starts filling the warm pool (Config.WarmPool sandboxes); the
// server calls it once its templates are ready.
func (m *Manager) StartWarm() {
	if m.warm != nil {
		m.warm.run()
	}
}

// run starts the filler, once.
func (w *warmPool) run() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return
	}
	w.started = true
	w.wg.Add(1)
	go w.fill()
}

// fill keeps the pool full until close.
func (w *warmPool) fill() {
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
		sb, cfg, err := w.start(ctx)
		cancel()
		if err != nil {
			w.filling.Unlock()
			w.log.Warn("warm pool: start a sandbox", "err", err, "retry_in", backoff)
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
		if w.closed || w.held > 0 {
			closed := w.closed
			w.mu.Unlock()
			w.discard(sb)
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

// hold empties the pool and keeps it empty until release is called: no
// pooled sandbox, ready or being started, exists in between (template
// removal counts a template's sandboxes then). A nil pool holds nothing.
func (w *warmPool) hold() (release func()) {
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
	w.drain(false)
	return func() {
		w.mu.Lock()
		w.held--
		w.mu.Unlock()
		w.wake()
	}
}

// close stops the filler for good and kills the pooled sandboxes.
func (w *warmPool) close() { w.drain(true) }

// drain stops the filler for good (closing) or for a while, and kills the
// pooled sandboxes.
func (w *warmPool) drain(closing bool) {
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
		w.discard(p.sb)
	}
}

// startWarm makes a sandbox for the warm pool: of the default template and
// runtime, started, but left in state creating, unlisted and without
// timers, for a create to take. It returns what its agent was told (boot
// gave it the same), for a create to compare with what it needs.
func (m *Manager) startWarm(ctx context.Context) (*store.Sandbox, []byte, error) {
	req, err := m.newRequest(ctx, CreateParams{}, nil, 0)
	if err != nil {
		return nil, nil, err
	}
	unlock := m.lock(req.sb.ID)
	defer unlock()
	sb, err := m.make(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	m.log.Debug("warm sandbox ready", "sandbox_id", sb.ID)
	return sb, agentConfigJSON(sb, req.tpl, sb.EnvVars), nil
}

// takeWarm gives create req (its record as newRequest built it, with a
// fresh id) a pooled sandbox when one fits: the pooled one keeps its id,
// tokens and box, and takes the request's metadata, environment, lifecycle
// and times. It returns nil, nil when none fits or none is ready.
func (m *Manager) takeWarm(ctx context.Context, req *createRequest) (*Sandbox, error) {
	w, tpl, want := m.warm, req.tpl, req.sb
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
		got, err := m.assignWarm(ctx, pw, tpl, want, req.policy)
		if err != nil {
			m.log.Warn("warm pool: a pooled sandbox could not be handed out; discarded", "sandbox_id", sb.ID, "err", err)
			go m.discardWarm(sb)
			continue
		}
		return got, nil
	}
}

func (m *Manager) assignWarm(ctx context.Context, pw pooled, tpl Template, want *store.Sandbox, pol *network.Egress) (*Sandbox, error) {
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
	if err := m.transition(ctx, sb, StateRunning, func(sb *store.Sandbox) {
		sb.Metadata, sb.EnvVars, sb.Life = want.Metadata, want.EnvVars, want.Life
		sb.CreatedAt, sb.StartedAt, sb.EndAt = want.CreatedAt, want.StartedAt, want.EndAt
		sb.TrafficToken = want.TrafficToken
	}); err != nil {
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
