package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/errdefs"
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
// then waits for no runtime start.
//
// Fillers (WarmPoolConfig.Parallel of them) top the pool up after each
// take, each starting one sandbox at a time. While creates are taking
// pooled sandboxes (one taken within refillQuiet) only the first filler
// runs: a refill's runtime starts and disk set-up cost more CPU than the
// creates and first commands of a burst, and would slow the burst the pool
// is there to serve. Once the takes stop, all fillers refill in parallel.
// Pooled boxes start in the background (BoxSpec.Background, the lowest
// CPU weight), so what the first filler does during a burst runs on the
// CPU the burst leaves idle; a create that takes one gives it the default
// weight before anything of the create's runs in it.
// A burst past the pool's size still starts its boxes as before, not
// behind a queue. The pool's target size follows demand: it is
// the most creates that asked for a pooled sandbox within one demand window
// over the recent past, kept between Min and Max. What the pool holds is
// bounded by a memory budget, measured: each pooled sandbox's memory use is
// read from its runtime once it is ready (an idle box costs its agent's
// pages), and the pool starts no sandbox that would take the pool's total
// past the budget.
//
// Pooled sandboxes are stored in state creating: they are not listed and
// have no timeout, a restart of sbx serve removes them as interrupted
// creates (Reconcile), and Close kills them.
//
// The pool (warmPool) keeps the pooled sandboxes and the fillers; it starts,
// measures and discards sandboxes through the functions it is given, and
// knows nothing else of the Manager. Handing one out (takeWarm) is the
// Manager's.

// WarmPoolConfig configures the warm pool. A zero Max turns it off.
type WarmPoolConfig struct {
	// Min sandboxes are kept started whatever the demand.
	Min int
	// Max bounds the pool when demand grows; a Max below Min is Min.
	Max int
	// MemoryMB bounds the memory the pooled sandboxes use together, as
	// measured; 0 means no bound beyond Max.
	MemoryMB int64
	// Parallel is how many sandboxes the pool starts at once (default 4).
	Parallel int
	// Templates sizes per-template pools (warm_template.go): template
	// name → sandboxes of it kept started, start command run and ready.
	Templates map[string]int
}

// Demand is counted in windows of demandWindow and remembered for
// demandMemory: the pool's target is the most creates seen in one window
// within that time, so a burst is met again by a full pool for a while
// after it, and an idle server shrinks back to Min.
const (
	demandWindow = 10 * time.Second
	demandMemory = 5 * time.Minute
	// refillQuiet is how long after a take the fillers but the first
	// wait before starting sandboxes.
	refillQuiet = 500 * time.Millisecond
	// defaultPooledBytes stands for a pooled sandbox's memory until one
	// has been measured (or where the runtime cannot tell).
	defaultPooledBytes = 16 << 20
)

type warmPool struct {
	cfg WarmPoolConfig
	// start makes a sandbox for the pool and returns it with the agent
	// configuration it was started with; discard kills one; usage reports
	// the memory a box uses (false when its runtime cannot tell).
	start   func(ctx context.Context) (*store.Sandbox, []byte, error)
	discard func(sb *store.Sandbox)
	usage   func(ctx context.Context, sb *store.Sandbox) (int64, bool)
	log     *slog.Logger
	now     func() time.Time

	mu    sync.Mutex
	ready []pooled
	// starting counts sandboxes being started by fillers.
	starting int
	// demand holds the creates that asked for a pooled sandbox, per
	// window, newest last.
	demand []demandCount
	// lastTake is when a create last took a pooled sandbox.
	lastTake time.Time
	started  bool
	closed   bool
	// held counts hold calls in progress: fillers start nothing while it
	// is not zero.
	held int
	// filling is held shared by each filler while it starts a sandbox:
	// hold takes it exclusively to wait for every one in flight.
	filling sync.RWMutex
	kick    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	// sized, when set, is told the number of ready sandboxes whenever it
	// changes, under mu (it must not call back into the pool).
	sized func(ready int)
}

// resized tells sized the pool's size; the caller holds w.mu.
func (w *warmPool) resized() {
	if w.sized != nil {
		w.sized(len(w.ready))
	}
}

// pooled is a sandbox of the pool, the agent configuration it was started
// with, and the memory it used once ready.
type pooled struct {
	sb    *store.Sandbox
	cfg   []byte
	bytes int64
}

type demandCount struct {
	window time.Time
	n      int
}

func newWarmPool(cfg WarmPoolConfig, start func(context.Context) (*store.Sandbox, []byte, error), discard func(*store.Sandbox), usage func(context.Context, *store.Sandbox) (int64, bool), log *slog.Logger) *warmPool {
	cfg.Max = max(cfg.Max, cfg.Min)
	if cfg.Parallel <= 0 {
		cfg.Parallel = 4
	}
	return &warmPool{cfg: cfg, start: start, discard: discard, usage: usage, log: log, now: time.Now,
		kick: make(chan struct{}, cfg.Parallel), done: make(chan struct{})}
}

// Start starts filling the warm pool; the server calls it once its
// templates are ready.
func (w WarmPools) Start() {
	m := w.m
	if m.warm != nil {
		m.warm.run()
	}
}

// run starts the fillers, once.
func (w *warmPool) run() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return
	}
	w.started = true
	for i := range w.cfg.Parallel {
		w.wg.Add(1)
		go w.fill(i)
	}
}

// target is the size the pool aims for now: the recent demand between Min
// and Max. Called with mu held.
func (w *warmPool) target() int {
	cut := w.now().Add(-demandMemory)
	peak := 0
	for _, d := range w.demand {
		if d.window.After(cut) {
			peak = max(peak, d.n)
		}
	}
	return min(max(peak, w.cfg.Min), w.cfg.Max)
}

// fits reports whether one more pooled sandbox stays within the memory
// budget, counting those being started at the measured average. Called
// with mu held.
func (w *warmPool) fits() bool {
	if w.cfg.MemoryMB <= 0 {
		return true
	}
	var used, measured int64
	for _, p := range w.ready {
		used += p.bytes
		if p.bytes > 0 {
			measured++
		}
	}
	each := int64(defaultPooledBytes)
	if measured > 0 {
		each = used / measured
	}
	used += each * int64(len(w.ready)-int(measured)+w.starting+1)
	return used <= w.cfg.MemoryMB<<20
}

// fill is filler i: it keeps the pool at its target until close, and
// shrinks it when demand has fallen. Fillers after the first wait while
// creates are taking sandboxes.
func (w *warmPool) fill(i int) {
	defer w.wg.Done()
	backoff := time.Second
	for {
		w.filling.RLock()
		w.mu.Lock()
		tgt := w.target()
		need := !w.closed && w.held == 0 && len(w.ready)+w.starting < tgt && w.fits()
		var quiet time.Duration
		if since := w.now().Sub(w.lastTake); need && i > 0 && since < refillQuiet {
			need, quiet = false, refillQuiet-since
		}
		var surplus *store.Sandbox
		if !need && !w.closed && w.held == 0 && len(w.ready) > tgt {
			surplus = w.ready[len(w.ready)-1].sb
			w.ready = w.ready[:len(w.ready)-1]
			w.resized()
		}
		idle := len(w.ready) > w.cfg.Min
		if need {
			w.starting++
		}
		w.mu.Unlock()
		if surplus != nil {
			w.filling.RUnlock()
			w.discard(surplus)
			continue
		}
		if !need {
			w.filling.RUnlock()
			// A pool above Min may have to shrink once its demand is
			// forgotten: look again now and then.
			var later <-chan time.Time
			if quiet > 0 {
				later = time.After(quiet)
			} else if idle {
				later = time.After(demandWindow)
			}
			select {
			case <-w.kick:
			case <-later:
			case <-w.done:
				return
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		sb, cfg, err := w.start(ctx)
		var used int64
		if err == nil && w.usage != nil {
			used, _ = w.usage(ctx, sb)
		}
		cancel()
		w.mu.Lock()
		w.starting--
		if err != nil {
			w.mu.Unlock()
			w.filling.RUnlock()
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
		if w.closed || w.held > 0 {
			closed := w.closed
			w.mu.Unlock()
			w.discard(sb)
			w.filling.RUnlock()
			if closed {
				return
			}
			continue
		}
		w.ready = append(w.ready, pooled{sb: sb, cfg: cfg, bytes: used})
		w.resized()
		var total int64
		for _, p := range w.ready {
			total += p.bytes
		}
		w.log.Debug("warm pool grew", "pooled", len(w.ready), "starting", w.starting, "target", w.target(), "pool_bytes", total)
		w.mu.Unlock()
		w.filling.RUnlock()
	}
}

// wake tells the fillers to look again whether the pool needs a sandbox.
func (w *warmPool) wake() {
	for range w.cfg.Parallel {
		select {
		case w.kick <- struct{}{}:
		default:
			return
		}
	}
}

// pop takes a pooled sandbox, if there is one, counts the demand, and wakes
// the fillers.
func (w *warmPool) pop() (pooled, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return pooled{}, false
	}
	window := w.now().Truncate(demandWindow)
	if n := len(w.demand); n > 0 && w.demand[n-1].window.Equal(window) {
		w.demand[n-1].n++
	} else {
		cut := w.now().Add(-demandMemory)
		for len(w.demand) > 0 && !w.demand[0].window.After(cut) {
			w.demand = w.demand[1:]
		}
		w.demand = append(w.demand, demandCount{window: window, n: 1})
	}
	w.wake()
	if len(w.ready) == 0 {
		return pooled{}, false
	}
	p := w.ready[0]
	w.ready = w.ready[1:]
	w.resized()
	w.lastTake = w.now()
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
	// A sandbox being started when the hold began is discarded by its
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

// close stops the fillers for good and kills the pooled sandboxes.
func (w *warmPool) close() { w.drain(true) }

// drain stops the fillers for good (closing) or for a while, and kills the
// pooled sandboxes.
func (w *warmPool) drain(closing bool) {
	w.mu.Lock()
	drained := w.ready
	w.ready = nil
	w.resized()
	if closing && !w.closed {
		w.closed = true
		close(w.done)
	}
	w.mu.Unlock()
	if closing {
		w.wg.Wait() // a sandbox being started is discarded by its filler
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
	req.background = true
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
	if len(req.volumes) > 0 {
		// Volumes are mounted as a box starts: no pooled box has them.
		return nil, nil
	}
	if req.policy != nil && req.policy.Intercepts() {
		// The egress CA goes into the root filesystem before the box
		// starts: no pooled box has it.
		return nil, nil
	}
	tw, baked := m.templatePool(tpl, want)
	if baked {
		w = tw
	} else if w == nil || tpl.image != "" || len(tpl.StartCmd) > 0 || tpl.ReadyCmd != "" || tpl.ReadyPort != 0 {
		return nil, nil
	}
	if !m.warmFits(tpl, want) {
		return nil, nil // other resources or runtime: a pooled box would only be discarded
	}
	for {
		pw, ok := w.pop()
		if !ok {
			m.hooks().warmTake(false)
			return nil, nil
		}
		sb := pw.sb
		if sb.Template != want.Template || sb.Runtime != want.Runtime || sb.CPUs != want.CPUs ||
			sb.MemoryMB != want.MemoryMB || sb.DiskMB != want.DiskMB || sb.Pids != want.Pids ||
			baked && !bytes.Equal(agentConfigJSON(sb, tpl, want.EnvVars), pw.cfg) {
			// Made for other defaults (a template changed meanwhile; a
			// start command keeps the environment it was started with):
			// of no use to anyone.
			go m.discardWarm(sb)
			continue
		}
		got, err := m.assignWarm(ctx, pw, tpl, want, req.policy)
		if errors.Is(err, errdefs.ErrResourceExhausted) {
			go m.discardWarm(sb)
			return nil, err
		}
		if err != nil {
			m.log.Warn("warm pool: a pooled sandbox could not be handed out; discarded", "sandbox_id", sb.ID, "err", err)
			go m.discardWarm(sb)
			continue
		}
		m.hooks().warmTake(true)
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
	// It waited in the background (BoxSpec.Background); from now on a
	// caller waits on it.
	if rt, err := m.runtimeOf(sb); err != nil {
		return nil, err
	} else if fg, ok := rt.(Foregrounder); ok {
		if err := fg.Foreground(ctx, sb.ID); err != nil {
			return nil, fmt.Errorf("cpu weight: %w", err)
		}
	}
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
	// The request's team's quota, checked with the state write that
	// makes the box count as the team's (quota.go).
	m.capacity.Lock()
	as := *sb
	as.Team = want.Team
	q, err := m.quota(ctx, &as, quotaStart)
	if err == nil {
		err = m.transitionQuota(ctx, sb, StateRunning, func(sb *store.Sandbox) {
			sb.Metadata, sb.EnvVars, sb.Life = want.Metadata, want.EnvVars, want.Life
			sb.CreatedAt, sb.StartedAt, sb.EndAt = want.CreatedAt, want.StartedAt, want.EndAt
			sb.TrafficToken = want.TrafficToken
			sb.Team = want.Team
		}, q)
	}
	m.capacity.Unlock()
	if err != nil {
		return nil, err
	}
	m.log.Info("sandbox created", "sandbox_id", sb.ID, "template", sb.Template, "runtime", sb.Runtime, "warm", true)
	return sb, nil
}

// configureAgent gives sandbox sb's agent configuration cfg (see
// agentConfigJSON).
func (m *Manager) configureAgent(ctx context.Context, sb *store.Sandbox, cfg []byte) error {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return m.dialAgent(ctx, sb.ID) },
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

// memoryMeter is implemented by runtimes that can tell the memory a box's
// cgroup is charged for.
type memoryMeter interface {
	MemoryUsage(ctx context.Context, id string) (int64, error)
}

// memoryUsage reports the memory sandbox sb uses, for the warm pool's
// budget; false when its runtime cannot tell.
func (m *Manager) memoryUsage(ctx context.Context, sb *store.Sandbox) (int64, bool) {
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return 0, false
	}
	mm, ok := rt.(memoryMeter)
	if !ok {
		return 0, false
	}
	n, err := mm.MemoryUsage(ctx, sb.ID)
	if err != nil {
		m.log.Debug("warm pool: memory usage", "sandbox_id", sb.ID, "err", err)
		return 0, false
	}
	return n, true
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
