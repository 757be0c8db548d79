// Package sandbox holds the Manager: the one place where sandboxes are
// created, looked up, timed out, killed and re-adopted after a restart of sbx
// serve. It assembles each sandbox's root filesystem (an overlayfs over the
// template's read-only layer), binds the agent's socket, and hands a BoxSpec
// to the Runtime it is given.
//
// # Lifecycle
//
// A sandbox is in exactly one stored State:
//
//  1. creating: the record exists; the rootfs and the box are being set up
//     (a warm pool's sandbox stays here until a create takes it).
//  2. running: the box runs and its agent answered /health.
//  3. pausing: the box is being frozen, checkpointed or stopped; the pause
//     kind (frozen, memory, filesystem) is stored with the state.
//  4. paused: the box is frozen, or gone with its memory image and files
//     (memory) or its files alone (filesystem) kept; no timer runs.
//  5. resuming: the box is being thawed, restored or started again.
//  6. killed: being torn down; the record is deleted once resources are gone.
//  7. failed: the box died (or died while sbx serve was not watching); its
//     resources are released and the record is kept so clients learn what
//     happened.
//
// The moves between them are one table (moves, in state.go):
//
//	creating → running | killed
//	running  → pausing | paused | killed | failed
//	pausing  → paused  | running | killed
//	paused   → resuming | killed
//	resuming → running | paused | killed
//	killed, failed: none (a killed record is deleted once its resources
//	are gone; a failed one is kept until a kill deletes it)
//
// running → paused is a box lost with its files kept; pausing → running and
// resuming → paused are a pause or resume that failed or was undone.
//
// Every state change goes through one function, the Manager's transition:
// it checks the move against the table, stores the new state (with the
// fields that go with it) by a compare-and-set on the record's version
// ([store.DB.UpdateSandbox]), and only then acts: leaving running stops the
// sandbox's timers, entering running arms them and watches its box. A move
// the table refuses is a failed precondition; a record that another writer
// (another server on the same database) moved meanwhile is a conflict, and
// nothing is done. Create, the warm pool, pause and resume, the box
// watcher (watch.go), the timers (timers.go), kill and Reconcile all call
// it.
//
// Reconcile, called once at start, walks every record and brings it in
// line with what the runtime reports; an interrupted pause or resume ends
// paused or running, never both, and never loses the sandbox.
//
// # Parts
//
// The Manager is made of parts with their own state and narrow
// dependencies: the timers (timers.go), the warm pool (warm.go), the disk
// pool (internal/disk), [TemplateUse] (templates.go: templates in use),
// [Snapshots] (snapshot.go: snapshots and forks) and [BuildBoxes]
// (manager_build.go: sandboxes for template builds). The data plane is told
// of sandboxes that go or pause through [Hooks].
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/disk"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/internal/store"
)

// Template is what the Manager needs to know of a template.
type Template struct {
	Name string
	// Layers are read-only root filesystem directories, uppermost first.
	Layers []string
	// DefaultUser runs processes when a request names no user.
	DefaultUser string
	// CPUs and MemoryMB are the template's default limits; 0 leaves them
	// to Config.DefaultCPUs/DefaultMemoryMB.
	CPUs     float64
	MemoryMB int64
	// Env ("K=V") and Workdir are the defaults of every process in the
	// sandbox; the create request's envVars override Env.
	Env     []string
	Workdir string
	// StartCmd, ReadyCmd, ReadyPort and ReadyTimeout: see runStartCommand.
	StartCmd     []string
	ReadyCmd     string
	ReadyPort    int
	ReadyTimeout time.Duration

	// image is the memory image a sandbox made from a snapshot is
	// restored from; empty for a fresh start. runtime is the runtime that
	// can restore it.
	image, runtime string
}

// Templates resolves template names. Get returns an error wrapping
// errdefs.ErrNotFound for an unknown name.
type Templates interface {
	Get(ctx context.Context, name string) (Template, error)
}

// Config configures a Manager.
type Config struct {
	// DataDir holds per-sandbox directories (DataDir/sandboxes/ID).
	DataDir string
	// AgentPath is the host path of the static sbx-agent binary.
	AgentPath string
	// Runtimes are the runtimes sandboxes can run on, by name ("runc",
	// "runsc"). Each sandbox stores the name of its own.
	Runtimes map[string]Runtime
	// RuntimeName is the default runtime, for create requests that name
	// none; it must be in Runtimes. It may be empty when there is one.
	RuntimeName string
	// UnavailableRuntimes are runtimes this server knows but could not set
	// up, with the reason; a create asking for one is refused with it.
	UnavailableRuntimes map[string]string
	// DefaultTimeout applies when a create request gives none.
	DefaultTimeout time.Duration
	// MaxTimeout bounds requested timeouts; 0 means unlimited (and allows
	// sandboxes with no time limit).
	MaxTimeout time.Duration
	// Default limits, used when the template sets none.
	DefaultCPUs     float64
	DefaultMemoryMB int64
	DefaultPids     int64
	DefaultDiskMB   int64
	// MaxCPUs and MaxMemoryMB bound what a create request (and the
	// template's defaults) may ask for; 0 means no bound beyond the
	// host's.
	MaxCPUs     float64
	MaxMemoryMB int64
	// CapacityCPUs and CapacityMemoryMB are what the sandboxes that hold
	// a box may reserve together (their CPU quotas and memory limits);
	// a create or resume past them is refused as unavailable (503, the
	// SDKs' ServiceBusyError). 0 means no bound.
	CapacityCPUs     float64
	CapacityMemoryMB int64
	// ReadyTimeout is how long a create waits for a template's ready
	// check unless the template sets its own; 0 means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// IDMap, when not nil, runs every sandbox in its own user namespace
	// with this mapping; template layers must be owned by the mapped ids.
	IDMap *IDMap
	// MaxFork bounds the copies one fork request may make (default 10).
	MaxFork int
	// WarmPool sizes the pool of sandboxes of the default template and
	// runtime kept started ahead of creates (warm.go); a zero Max turns
	// it off.
	WarmPool WarmPoolConfig
	// Network, when not nil, gives each sandbox a network (namespace,
	// veth, egress policy); otherwise sandboxes have loopback only.
	Network Network
	// Hooks connect the Manager to the data plane; SetHooks sets them
	// when they can only be made after the Manager.
	Hooks Hooks
	// Events, when not nil, is told of each lifecycle event once stored.
	Events EventSink
	// Volumes resolves the volumes creates mount; nil refuses creates
	// that mount any.
	Volumes Volumes
	// Remote, when not nil, is the object store snapshots and paused
	// sandboxes are copied to (remote.go); Fleet, the whole store of the
	// nodes sharing it, through which a node finds and takes over other
	// nodes' snapshots and paused sandboxes. Either without the other does
	// nothing.
	Remote Remote
	Fleet  Fleet
	// CgroupParent is the cgroup the runtimes put boxes under, relative to
	// the cgroup mounts ("/sbx" if empty; "/sbx/nodes/<node>" on a fleet
	// node): where the box watcher reads a dead box's OOM kills.
	CgroupParent string
}

// Hooks are what the Manager tells the data plane (the proxy) and asks of
// it. Every field may be nil.
type Hooks struct {
	// Gone is called with the id of each sandbox once it is gone (killed,
	// or failed): the proxy drops its cached connections there.
	Gone func(id string)
	// Pausing is called with the id of each sandbox being paused: it
	// stops answering.
	Pausing func(id string)
	// Activity reports when sandbox id last saw a request and how many it
	// has open; idle pauses use it.
	Activity func(id string) (last time.Time, open int)
	// WarmReady is told the number of sandboxes ready in the warm pool
	// whenever it changes, and WarmTake whether a create that asked the
	// pool got one (for metrics). Neither may call the Manager.
	WarmReady func(n int)
	WarmTake  func(hit bool)
}

func (h Hooks) warmReady(n int) {
	if h.WarmReady != nil {
		h.WarmReady(n)
	}
}

func (h Hooks) warmTake(hit bool) {
	if h.WarmTake != nil {
		h.WarmTake(hit)
	}
}

func (h Hooks) gone(id string) {
	if h.Gone != nil {
		h.Gone(id)
	}
}

func (h Hooks) pause(id string) {
	if h.Pausing != nil {
		h.Pausing(id)
	}
}

func (h Hooks) activity(id string) (time.Time, int) {
	if h.Activity == nil {
		return time.Time{}, 0
	}
	return h.Activity(id)
}

// Manager owns every sandbox of one sbx serve. It is safe for concurrent use.
type Manager struct {
	cfg       Config
	templates Templates
	db        *store.DB
	log       *slog.Logger

	// tpl guards templates in use against removal.
	tpl *TemplateUse

	mu    sync.Mutex
	locks map[string]*sync.Mutex
	// capacity is held from a capacity check to the state write that
	// makes the sandbox count, so that two creates cannot both take the
	// last room.
	capacity sync.Mutex
	// watched holds the pid of each box watchBox follows.
	watched map[string]int
	hookv   Hooks

	// timers ends sandboxes at their end of life and pauses idle ones.
	timers *timers
	// disks hands out quota'd disks; nil when sandboxes have no quota.
	disks *disk.Pool
	// snaps takes and deletes snapshots and makes forks.
	snaps *Snapshots
	// warm is the warm pool; nil when off.
	warm *warmPool
	// warmTpl are the per-template pools, by template name
	// (warm_template.go).
	warmTpl map[string]*warmPool
	// remote is the object store tier; nil without one.
	remote *remoteTier
}

// New returns a Manager. Call Reconcile before serving requests.
func New(cfg Config, templates Templates, db *store.DB, logger *slog.Logger) (*Manager, error) {
	if err := checkRuntimes(&cfg); err != nil {
		return nil, err
	}
	// 0711: a box's init resolves its rootfs path as the box's mapped
	// root, an unprivileged host uid, so every directory on the way must be
	// searchable by others; none is listable.
	sdir := filepath.Join(cfg.DataDir, "sandboxes")
	if err := os.MkdirAll(sdir, 0o711); err != nil {
		return nil, fmt.Errorf("create sandboxes dir: %w", err)
	}
	if err := os.Chmod(sdir, 0o711); err != nil {
		return nil, fmt.Errorf("create sandboxes dir: %w", err)
	}
	// A unix socket path holds at most 107 bytes; refuse a data directory
	// whose agent sockets would not fit rather than fail on every create.
	if p := filepath.Join(cfg.DataDir, "sandboxes", newID(), agentSocketDir, agentapi.SocketName); len(p) > 107 {
		return nil, fmt.Errorf("data dir %s is too long: agent socket paths (%d bytes) exceed the 107-byte unix socket limit", cfg.DataDir, len(p))
	}
	m := &Manager{
		cfg: cfg, templates: templates, db: db, log: logger,
		locks:   map[string]*sync.Mutex{},
		watched: map[string]int{},
		hookv:   cfg.Hooks,
	}
	if m.cfg.MaxFork <= 0 {
		m.cfg.MaxFork = 10
	}
	m.tpl = &TemplateUse{db: db, cpus: cfg.DefaultCPUs, memoryMB: cfg.DefaultMemoryMB}
	m.timers = newTimers(m.endOfLife, m.idlePause, func(id string) (time.Time, int) { return m.hooks().activity(id) })
	m.snaps = &Snapshots{
		dataDir: cfg.DataDir, db: db, templates: templates, log: logger,
		maxFork: m.cfg.MaxFork, tplMu: &m.tpl.mu, sandboxes: m, idmap: cfg.IDMap,
	}
	if cfg.Remote != nil && cfg.Fleet != nil {
		m.remote = &remoteTier{r: cfg.Remote, tmp: filepath.Join(cfg.DataDir, "objstore-tmp"), log: logger}
		m.snaps.remote, m.snaps.fleet, m.snaps.shift = m.remote, cfg.Fleet, m.shift()
	}
	if cfg.WarmPool.Max > 0 || cfg.WarmPool.Min > 0 {
		m.warm = newWarmPool(cfg.WarmPool, m.startWarm, m.discardWarm, m.memoryUsage, logger)
		m.warm.sized = func(n int) { m.hooks().warmReady(n) }
		m.tpl.warm = append(m.tpl.warm, m.warm)
	}
	m.warmTpl = m.newTemplatePools(cfg.WarmPool, logger)
	for _, name := range m.Warm().Templates() {
		m.tpl.warm = append(m.tpl.warm, m.warmTpl[name])
	}
	if cfg.DefaultDiskMB > 0 {
		p, err := disk.NewPool(cfg.DataDir, cfg.DefaultDiskMB, 2, m.cfg.MaxFork, logger)
		if err != nil {
			return nil, err
		}
		m.disks = p
	}
	return m, nil
}

// SetHooks sets the hooks of Config.Hooks; internal/server calls it once,
// before serving, when the data plane is made after the Manager.
func (m *Manager) SetHooks(h Hooks) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hookv = h
}

func (m *Manager) hooks() Hooks {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hookv
}

// lock serialises operations on one sandbox id. It is a local
// optimisation: the compare-and-set of every transition is what keeps two
// writers (two servers on one database) off one sandbox.
func (m *Manager) lock(id string) func() {
	m.mu.Lock()
	l, ok := m.locks[id]
	if !ok {
		l = new(sync.Mutex)
		m.locks[id] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// CreateParams are the caller-settable properties of a new sandbox. This is
// the whole allowlist: nothing else about a box can be chosen by an API
// caller.
type CreateParams struct {
	Template string
	// Timeout is the time to live; nil means the server default, 0 means no
	// time limit.
	Timeout  *time.Duration
	Metadata map[string]string
	EnvVars  map[string]string
	// Runtime names the runtime to run on; empty means the server's
	// default.
	Runtime string
	// CPUs (cores) and MemoryMB override the template's and the server's
	// defaults; 0 keeps them. Bounded by Config.MaxCPUs/MaxMemoryMB.
	CPUs     float64
	MemoryMB int64
	// PrivateTraffic makes the sandbox's ports reachable through the proxy
	// only with its traffic access token (E2B's allowPublicTraffic: false).
	PrivateTraffic bool
	// Lifecycle is the sandbox's lifecycle policy (see manager_lifecycle.go);
	// its PauseKind and PausedAt are ignored.
	Lifecycle Lifecycle
	// Network is the sandbox's egress policy, checked by
	// network.ParsePolicy; nil means the server's default.
	Network *network.Egress
	// Volumes are the volumes the sandbox mounts (VolumeID and Path),
	// for its whole life: across pauses, resumes and server restarts.
	Volumes []VolumeMount
	// Team is the team the sandbox belongs to; empty is the default team.
	Team string
}

// Sandbox is a sandbox as the API sees it.
type Sandbox = store.Sandbox

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newID returns a 20-character lowercase alphanumeric id, valid as a DNS label.
func newID() string {
	b := make([]byte, 20)
	rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	// Start with a letter so the id is never mistaken for a port number in
	// {port}-{id}.{domain} hosts.
	b[0] = idAlphabet[int(b[0])%26]
	return string(b)
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (m *Manager) dir(id string) string { return filepath.Join(m.cfg.DataDir, "sandboxes", id) }

func (m *Manager) resolveTimeout(t *time.Duration) (time.Duration, error) {
	d := m.cfg.DefaultTimeout
	if t != nil {
		d = *t
	}
	if d < 0 {
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "timeout must not be negative")
	}
	if m.cfg.MaxTimeout > 0 && (d == 0 || d > m.cfg.MaxTimeout) {
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "timeout must be between 1s and the server maximum of %s", m.cfg.MaxTimeout)
	}
	return d, nil
}

// Create starts a new sandbox and returns once its agent answers.
func (m *Manager) Create(ctx context.Context, p CreateParams) (*Sandbox, error) {
	timeout, err := m.resolveTimeout(p.Timeout)
	if err != nil {
		return nil, err
	}
	if p.Timeout == nil {
		timeout = m.teamDefaultTimeout(ctx, p.Team, timeout)
	}
	req, err := m.newRequest(ctx, p, nil, timeout)
	if err != nil {
		return nil, err
	}
	// Over its team's quota: refused before a pooled box is touched
	// (make and assignWarm check again, under the team's lock).
	err = m.checkQuota(ctx, req.sb, quotaStart)
	if err != nil {
		req.storedOrDropped()
		return nil, err
	}
	if sb, err := m.takeWarm(ctx, req); sb != nil || err != nil {
		req.storedOrDropped()
		return sb, err
	}
	return m.makeRunning(ctx, req)
}

// makeRunning makes req's sandbox and moves it to running.
func (m *Manager) makeRunning(ctx context.Context, req *createRequest) (*Sandbox, error) {
	unlock := m.lock(req.sb.ID)
	defer unlock()
	sb, err := m.make(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := m.created(ctx, sb); err != nil {
		return nil, err
	}
	return sb, nil
}

// createRequest is a create checked and ready to be made: the record to
// store, the template to make it from, the egress policy its network is set
// up with. Create, BuildBoxes.Create, the warm pool and forks build one
// (newRequest).
type createRequest struct {
	sb  *store.Sandbox
	tpl Template
	// policy is the sandbox's egress policy; nil means the server's
	// default.
	policy *network.Egress
	// storedOrDropped lets go of the template lock newRequest took; make
	// calls it once the record is stored (or not).
	storedOrDropped func()
	// background starts the box at the lowest CPU weight (BoxSpec.Background):
	// a warm pool's sandbox, which no caller waits for.
	background bool
	// volumes are the volumes the sandbox mounts.
	volumes []VolumeMount
}

// newRequest checks create parameters p and builds the sandbox's record.
// The sandbox is made from tpl when it is not nil (BuildBoxes.Create), else from
// the template or snapshot p names. timeout is its time to live (0: none).
// On success the template lock is held shared (req.storedOrDropped lets go
// of it), so the template is not removed before the record is stored.
func (m *Manager) newRequest(ctx context.Context, p CreateParams, tpl *Template, timeout time.Duration) (*createRequest, error) {
	if p.Template == "" {
		p.Template = "base"
	}
	if err := validateMap("metadata", p.Metadata); err != nil {
		return nil, err
	}
	if err := validateMap("envVars", p.EnvVars); err != nil {
		return nil, err
	}
	if err := m.networkAvailable(p.Network); err != nil {
		return nil, err
	}
	if err := checkVolumeMounts(p.Volumes); err != nil {
		return nil, err
	}
	if err := m.teamTimeout(ctx, p.Team, timeout); err != nil {
		return nil, err
	}
	if len(p.Volumes) > 0 && m.cfg.Volumes == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "this server has no volumes")
	}
	// A runtime the caller names is checked before the template is looked
	// up, so a bad request is told so whatever it names.
	var rtName string
	var life Lifecycle
	if p.Runtime != "" {
		var err error
		if rtName, life, err = m.runtimeAndLife(p.Runtime, p.Lifecycle); err != nil {
			return nil, err
		}
	}
	// The template is resolved once, under the template lock that is held
	// until the record is stored.
	m.tpl.mu.RLock()
	req, err := m.resolvedRequest(ctx, p, tpl, rtName, life, timeout)
	if err != nil {
		m.tpl.mu.RUnlock()
		return nil, err
	}
	var once sync.Once
	req.storedOrDropped = func() { once.Do(m.tpl.mu.RUnlock) }
	return req, nil
}

// runtimeAndLife picks runtime name (or the default for "") and checks
// the lifecycle against it.
func (m *Manager) runtimeAndLife(name string, l Lifecycle) (string, Lifecycle, error) {
	rtName, err := m.pickRuntime(name)
	if err != nil {
		return "", Lifecycle{}, err
	}
	life, err := m.checkLifecycle(rtName, l)
	return rtName, life, err
}

// resolvedRequest is newRequest's part under the template lock. rtName is
// "" when the caller named no runtime.
func (m *Manager) resolvedRequest(ctx context.Context, p CreateParams, given *Template, rtName string, life Lifecycle, timeout time.Duration) (*createRequest, error) {
	var tpl Template
	if given != nil {
		tpl = *given
	} else {
		var err error
		if tpl, err = m.snaps.resolveTemplate(ctx, p.Template); err != nil {
			return nil, err
		}
	}
	if rtName == "" {
		// A memory snapshot restores on the runtime that took it.
		var err error
		if rtName, life, err = m.runtimeAndLife(tpl.runtime, p.Lifecycle); err != nil {
			return nil, err
		}
	}
	return m.buildRequest(ctx, p, tpl, rtName, life, timeout)
}

// buildRequest builds the record of a sandbox of resolved template tpl.
func (m *Manager) buildRequest(ctx context.Context, p CreateParams, tpl Template, rtName string, life Lifecycle, timeout time.Duration) (*createRequest, error) {
	if tpl.image != "" && tpl.runtime != rtName {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "snapshot %q holds a %s memory image; it cannot start on %s", p.Template, tpl.runtime, rtName)
	}
	now := time.Now().UTC()
	sb := &store.Sandbox{
		ID:           newID(),
		Template:     tpl.Name,
		State:        StateCreating,
		Runtime:      rtName,
		CreatedAt:    now,
		StartedAt:    now,
		Metadata:     p.Metadata,
		EnvVars:      p.EnvVars,
		EnvdToken:    newToken(),
		TrafficToken: trafficToken(p.PrivateTraffic),
		CPUs:         firstNonZero(p.CPUs, tpl.CPUs, m.cfg.DefaultCPUs),
		MemoryMB:     firstNonZero(p.MemoryMB, tpl.MemoryMB, m.cfg.DefaultMemoryMB),
		DiskMB:       m.cfg.DefaultDiskMB,
		Pids:         m.cfg.DefaultPids,
		Life:         life,
		Team:         p.Team,
	}
	sb.Life.TTL = timeout
	if timeout > 0 {
		sb.EndAt = now.Add(timeout)
	}
	if err := m.checkLimits(sb.CPUs, sb.MemoryMB, p, tpl.Name); err != nil {
		return nil, err
	}
	return &createRequest{sb: sb, tpl: tpl, policy: p.Network, volumes: p.Volumes}, nil
}

// make stores req's record (state creating) and starts its box and its
// template's start command. On failure nothing of it is left. The caller
// holds the sandbox's lock.
func (m *Manager) make(ctx context.Context, req *createRequest) (*Sandbox, error) {
	sb, tpl := req.sb, req.tpl
	log := m.log.With("sandbox_id", sb.ID, "template", sb.Template, "runtime", sb.Runtime)
	m.capacity.Lock()
	err := m.checkCapacity(ctx, sb)
	var q *store.Quota
	if err == nil {
		q, err = m.quota(ctx, sb, quotaStart)
	}
	if err == nil {
		err = m.db.CreateSandboxQuota(ctx, sb, q)
	}
	m.capacity.Unlock()
	req.storedOrDropped()
	if err != nil {
		return nil, err
	}
	if len(req.volumes) > 0 {
		// Recorded before the box starts: boot mounts what is recorded,
		// and a volume is held (not destroyed) from here on.
		err = m.db.SetSandboxVolumes(ctx, sb.ID, req.volumes)
	}
	if err == nil {
		err = m.start(ctx, sb, tpl, req.policy, req.background)
	}
	if err != nil {
		err = errdefs.Wrap(errdefs.ErrUnavailable, err, "sandbox failed to start")
	} else if tpl.image == "" {
		// (A sandbox restored from a memory image has its processes.)
		err = m.runStartCommand(ctx, sb, tpl)
	}
	if err != nil {
		log.Error("create failed", "err", err)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		m.release(cctx, sb)
		if derr := m.db.DeleteSandbox(cctx, sb.ID); derr != nil {
			log.Error("delete record", "err", derr)
		}
		return nil, err
	}
	return sb, nil
}

// created moves sandbox sb, just made, to running (which arms its timeout,
// idle pause and box watch). The caller holds its lock.
func (m *Manager) created(ctx context.Context, sb *store.Sandbox) error {
	if err := m.transition(ctx, sb, StateRunning, nil); err != nil {
		return err
	}
	m.log.Info("sandbox created", "sandbox_id", sb.ID, "template", sb.Template, "runtime", sb.Runtime)
	return nil
}

func firstNonZero[T comparable](vs ...T) T {
	var zero T
	for _, v := range vs {
		if v != zero {
			return v
		}
	}
	return zero
}

// validateMap bounds caller-supplied maps so a request cannot store
// unbounded data or smuggle NULs into the agent's environment.
func validateMap(what string, m map[string]string) error {
	if len(m) > 256 {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s: at most 256 entries", what)
	}
	for k, v := range m {
		if k == "" || len(k) > 256 || len(v) > 64<<10 {
			return errdefs.New(errdefs.ErrInvalidArgument, "%s: keys must be 1-256 bytes and values at most 64 KiB", what)
		}
		for _, s := range []string{k, v} {
			for i := 0; i < len(s); i++ {
				if s[i] == 0 {
					return errdefs.New(errdefs.ErrInvalidArgument, "%s: NUL bytes are not allowed", what)
				}
			}
		}
		if what == "envVars" {
			for i := 0; i < len(k); i++ {
				if k[i] == '=' {
					return errdefs.New(errdefs.ErrInvalidArgument, "envVars: key %q contains '='", k)
				}
			}
		}
	}
	return nil
}

// agentConfigJSON is sandbox sb's agent configuration, with env (the
// create request's environment variables) over the template's.
func agentConfigJSON(sb *store.Sandbox, tpl Template, env map[string]string) []byte {
	return agentapi.Config{
		AccessToken:    sb.EnvdToken,
		EnvVars:        processEnv(tpl.Env, env),
		DefaultUser:    firstNonZero(tpl.DefaultUser, agentapi.DefaultUser),
		DefaultWorkdir: tpl.Workdir,
		SandboxID:      sb.ID,
		TemplateID:     sb.Template,
	}.Encode()
}

// start assembles the rootfs, binds the agent socket and starts the box,
// in a network with egress policy (nil: the server's default), in the
// background (BoxSpec.Background) when asked.
func (m *Manager) start(ctx context.Context, sb *store.Sandbox, tpl Template, policy *network.Egress, background bool) error {
	t0 := time.Now()
	dir := m.dir(sb.ID)
	// Closed from the start: mountRootfs gives it to the box's ids.
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create sandbox dir: %w", err)
	}
	if m.disks != nil {
		d, err := m.disks.Take(ctx)
		if err != nil {
			return fmt.Errorf("sandbox disk: %w", err)
		}
		if _, err := d.MoveInto(dir); err != nil {
			d.Destroy()
			return fmt.Errorf("sandbox disk: %w", err)
		}
	}
	rootfs, err := m.mountSandbox(ctx, sb.ID, tpl.Layers)
	if err != nil {
		return err
	}
	return m.boot(ctx, sb, tpl, bootSpec{rootfs: rootfs, image: tpl.image, policy: policy, t0: t0, background: background})
}

// mountSandbox mounts sandbox id's root filesystem (and its disk first,
// when it has one that is not mounted, as after a host restart) over
// layers, and returns its path.
func (m *Manager) mountSandbox(ctx context.Context, id string, layers []string) (string, error) {
	dir := m.dir(id)
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	if _, err := os.Stat(filepath.Join(dir, disk.Image)); err == nil {
		sd, err := disk.MountIn(dir)
		if err != nil {
			return "", fmt.Errorf("sandbox disk: %w", err)
		}
		upper, work = filepath.Join(sd.Mount(), "upper"), filepath.Join(sd.Mount(), "work")
	}
	return mountRootfs(dir, upper, work, layers, m.cfg.IDMap)
}

// bootSpec is what boot starts a box from.
type bootSpec struct {
	// rootfs is the mounted root filesystem.
	rootfs string
	// image, when not empty, is the memory image the box is restored
	// from instead of started.
	image string
	// policy is the egress policy a new network is set up with (nil: the
	// server's default, or the policy the sandbox had when its network
	// is made again).
	policy *network.Egress
	// t0 is when the boot's work began, for the log.
	t0 time.Time
	// background is BoxSpec.Background.
	background bool
}

// boot binds the agent socket and starts (or restores) the box described
// by bs, and waits for its agent.
func (m *Manager) boot(ctx context.Context, sb *store.Sandbox, tpl Template, bs bootSpec) error {
	rootfs, image, t0 := bs.rootfs, bs.image, bs.t0
	dir := m.dir(sb.ID)
	if err := makeSocketDir(dir); err != nil {
		return err
	}
	lnFile, err := listenUnix(m.socketPath(sb.ID))
	if err != nil {
		return err
	}
	defer lnFile.Close() // the box holds its own copy
	cfg := agentConfigJSON(sb, tpl, sb.EnvVars)
	bundle := filepath.Join(dir, "bundle")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return fmt.Errorf("create bundle dir: %w", err)
	}
	spec := BoxSpec{
		ID:            sb.ID,
		Rootfs:        rootfs,
		BundleDir:     bundle,
		AgentPath:     m.cfg.AgentPath,
		AgentListener: lnFile,
		AgentSocket:   m.socketPath(sb.ID),
		Env:           []string{agentapi.ConfigEnv + "=" + string(cfg), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Hostname:      "sbx-" + sb.ID[:8],
		Limits: Limits{
			CPUs:        sb.CPUs,
			MemoryBytes: sb.MemoryMB << 20,
			Pids:        sb.Pids,
		},
		IDMap:      m.cfg.IDMap,
		Background: bs.background,
	}
	if spec.Volumes, err = m.boxMounts(ctx, sb.ID); err != nil {
		return err
	}
	tn := time.Now()
	if spec.NetNS, spec.UserNS, err = m.setupNetwork(ctx, sb.ID, rootfs, bs.policy); err != nil {
		return err
	}
	tn2 := time.Now()
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return err
	}
	t1 := time.Now()
	if image != "" {
		cp, ok := rt.(Checkpointer)
		if !ok {
			return fmt.Errorf("restore box: the %s runtime cannot restore memory images", sb.Runtime)
		}
		if err := cp.Restore(ctx, spec, image); err != nil {
			return fmt.Errorf("restore box: %w", err)
		}
	} else if err := rt.Start(ctx, spec); err != nil {
		return fmt.Errorf("start box: %w", err)
	}
	t2 := time.Now()
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := m.awaitAgent(hctx, sb.ID); err != nil {
		return fmt.Errorf("agent did not come up: %w", err)
	}
	m.log.Debug("sandbox started", "sandbox_id", sb.ID, "rootfs", tn.Sub(t0), "network", tn2.Sub(tn), "box", t2.Sub(t1), "agent", time.Since(t2), "restored", image != "")
	return nil
}

// listenUnix binds a listening unix socket at path and returns it as a file
// to hand to the box.
func listenUnix(path string) (*os.File, error) {
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on agent socket: %w", err)
	}
	// The socket file must outlive this listener: the box keeps serving on
	// it after we close our copy.
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	ln.Close()
	if err != nil {
		return nil, fmt.Errorf("agent socket file: %w", err)
	}
	return f, nil
}

func (m *Manager) awaitAgent(ctx context.Context, id string) error {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return m.dialAgent(ctx, id) },
	}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+agentapi.HealthPath, nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("agent health: %s", resp.Status)
	}
	return nil
}

// release destroys the box and frees the sandbox's disk. It is idempotent.
// The caller has checked that sb's runtime is available (runtimeOf).
func (m *Manager) release(ctx context.Context, sb *Sandbox) {
	id := sb.ID
	log := m.log.With("sandbox_id", id, "runtime", sb.Runtime)
	if rt, err := m.runtimeOf(sb); err != nil {
		log.Error("destroy box", "err", err)
	} else if err := rt.Destroy(ctx, id); err != nil {
		log.Error("destroy box", "err", err)
	}
	m.teardownNetwork(ctx, id)
	dir := m.dir(id)
	if m.disks != nil {
		// The overlay first, then the disk goes back to the pool (or is
		// unmounted below).
		if err := unmountAll(filepath.Join(dir, "rootfs")); err == nil && mounted(filepath.Join(dir, disk.MountDir)) {
			m.disks.Recycle(dir)
		}
	}
	if err := unmountRootfs(dir); err != nil {
		log.Error("unmount rootfs", "err", err)
		return // never rm -rf through a mount
	}
	if err := os.RemoveAll(dir); err != nil {
		log.Error("remove sandbox dir", "err", err)
	}
}

// Get returns a live (creating or running) or failed sandbox.
func (m *Manager) Get(ctx context.Context, id string) (*Sandbox, error) {
	sb, err := m.db.GetSandbox(ctx, id)
	if err != nil {
		return nil, err
	}
	if sb.State == StateKilled {
		return nil, errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", id)
	}
	return sb, nil
}

// getRunning returns sandbox id if it is running.
func (m *Manager) getRunning(ctx context.Context, id string) (*Sandbox, error) {
	sb, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if sb.State == StateFailed && sb.Error != "" {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q failed: %s", id, sb.Error)
	}
	if sb.State != StateRunning {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s", id, sb.State)
	}
	return sb, nil
}

// ListFilter selects sandboxes.
type ListFilter struct {
	// States to include; empty means running and paused.
	States []State
	// Metadata entries that must all match.
	Metadata map[string]string
	// Template, when set, restricts to one template.
	Template string
	// StartedAfter, when not zero, keeps only sandboxes started at or
	// after it.
	StartedAfter time.Time
}

// List returns the sandboxes matching f, newest first.
func (m *Manager) List(ctx context.Context, f ListFilter) ([]*Sandbox, error) {
	states := f.States
	if len(states) == 0 {
		states = []State{StateRunning, StatePaused}
	}
	states = withTransitions(states)
	all, err := m.db.ListSandboxes(ctx, states...)
	if err != nil {
		return nil, err
	}
	var out []*Sandbox
	for _, sb := range all {
		if f.Template != "" && sb.Template != f.Template {
			continue
		}
		if !f.StartedAfter.IsZero() && sb.StartedAt.Before(f.StartedAfter) {
			continue
		}
		ok := true
		for k, v := range f.Metadata {
			if sb.Metadata[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, sb)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.After(out[j].StartedAt) })
	return out, nil
}

// Kill destroys sandbox id and deletes everything it had.
func (m *Manager) Kill(ctx context.Context, id string) error {
	unlock := m.lock(id)
	defer unlock()
	sb, err := m.db.GetSandbox(ctx, id)
	if err != nil {
		return err
	}
	if sb.State != StateFailed {
		// A box on a runtime this server cannot drive now cannot be
		// destroyed; refuse rather than drop the record of a box that may
		// still run.
		if _, err := m.runtimeOf(sb); err != nil {
			return err
		}
	}
	if canMove(sb.State, StateKilled) {
		if err := m.transition(ctx, sb, StateKilled, nil); err != nil {
			return err
		}
	}
	// (Already killed: an interrupted kill is finished. Failed: its
	// resources went when it failed; the record goes.)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	m.release(cctx, sb)
	if err := m.db.DeleteSandbox(cctx, id); err != nil {
		return err
	}
	if !sb.Life.PausedAt.IsZero() {
		m.dropPublished(cctx, id)
	}
	m.forget(id)
	m.log.Info("sandbox killed", "sandbox_id", id)
	m.snaps.dropUnused(cctx, sb.Template)
	return nil
}

// forget drops what the Manager keeps of sandbox id, gone, and tells the
// Gone hook.
func (m *Manager) forget(id string) {
	m.timers.stop(id)
	m.mu.Lock()
	delete(m.locks, id)
	m.mu.Unlock()
	m.hooks().gone(id)
}

// SetTimeout sets sandbox id to end d from now; 0 removes the time limit.
func (m *Manager) SetTimeout(ctx context.Context, id string, d time.Duration) error {
	if _, err := m.resolveTimeout(&d); err != nil {
		return err
	}
	return m.updateEnd(ctx, id, d, false, true)
}

// Extend makes sandbox id live at least d from now (E2B's connect semantics:
// the time to live is only ever extended). A nil d uses the server default.
func (m *Manager) Extend(ctx context.Context, id string, d *time.Duration) (*Sandbox, error) {
	dd, err := m.resolveTimeout(d)
	if err != nil {
		return nil, err
	}
	if err := m.updateEnd(ctx, id, dd, true, d != nil); err != nil {
		return nil, err
	}
	return m.Get(ctx, id)
}

// updateEnd gives sandbox id d more to live (see SetTimeout and Extend);
// given says d is the caller's, which its team's longest timeout must
// allow, rather than the server's default, which is cut to it.
func (m *Manager) updateEnd(ctx context.Context, id string, d time.Duration, extendOnly, given bool) error {
	unlock := m.lock(id)
	defer unlock()
	sb, err := m.db.GetSandbox(ctx, id)
	if err != nil {
		return err
	}
	if !given {
		d = m.teamDefaultTimeout(ctx, sb.Team, d)
	}
	if err := m.teamTimeout(ctx, sb.Team, d); err != nil {
		return err
	}
	if sb.State != StateRunning {
		if sb.State == StateKilled {
			return errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", id)
		}
		return errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s", id, sb.State)
	}
	var end time.Time
	if d > 0 {
		end = time.Now().UTC().Add(d)
	}
	if extendOnly {
		if sb.EndAt.IsZero() || (!end.IsZero() && end.Before(sb.EndAt)) {
			return nil // already lives at least as long
		}
	}
	sb.EndAt = end
	if !extendOnly {
		sb.Life.TTL = d
	}
	if err := m.update(ctx, sb, updatedEvent(ctx, sb)); err != nil {
		return err
	}
	m.timers.schedule(sb.ID, sb.EndAt)
	return nil
}

// armTimers arms running sandbox sb's end of life and idle pause.
func (m *Manager) armTimers(sb *store.Sandbox) {
	m.timers.schedule(sb.ID, sb.EndAt)
	m.timers.watchIdle(sb.ID, sb.Life.IdlePause)
}

// endOfLife is what a sandbox's end-of-life timer calls.
func (m *Manager) endOfLife(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Re-read: the end may have moved since the timer was armed.
	cur, err := m.db.GetSandbox(ctx, id)
	if err != nil || cur.EndAt.IsZero() || time.Now().Before(cur.EndAt) {
		return
	}
	m.log.Info("sandbox timed out", "sandbox_id", id)
	m.expire(ctx, cur)
}

// Reconcile brings stored records in line with the runtime after a start:
// running boxes are re-adopted (timers re-armed), boxes that died are marked
// failed and their resources released, half-created ones are removed.
func (m *Manager) Reconcile(ctx context.Context) error {
	ctx = withReason(ctx, reasonRestart)
	if err := m.snaps.reconcile(ctx); err != nil {
		return err
	}
	all, err := m.db.ListSandboxes(ctx)
	if err != nil {
		return err
	}
	for _, sb := range all {
		log := m.log.With("sandbox_id", sb.ID, "runtime", sb.Runtime)
		rt, rtErr := m.runtimeOf(sb)
		if rtErr != nil && sb.State != StateFailed {
			// Neither re-adopted nor torn down: a server started again
			// with the runtime back finds it as it was.
			log.Error("sandbox's runtime is not available; leaving it as stored", "state", sb.State, "err", rtErr)
			continue
		}
		switch sb.State {
		case StateKilled, StateCreating:
			// Interrupted mid-kill or mid-create: finish the job.
			m.release(ctx, sb)
			if err := m.db.DeleteSandbox(ctx, sb.ID); err != nil {
				return err
			}
			log.Info("removed interrupted sandbox", "state", sb.State)
		case StatePausing, StatePaused, StateResuming:
			if err := m.reconcileLifecycle(ctx, sb); err != nil {
				return err
			}
		case StateRunning:
			st, err := rt.State(ctx, sb.ID)
			if err != nil {
				// One box the runtime cannot read must not keep the
				// server from starting, nor be destroyed on a guess:
				// keep it as it is stored.
				log.Error("read box state; keeping the sandbox as running", "err", err)
				m.timers.schedule(sb.ID, sb.EndAt)
				continue
			}
			if st.Running {
				m.armTimers(sb)
				m.watchBoxPid(sb, st.Pid)
				log.Info("re-adopted running sandbox")
				continue
			}
			if sb.Life.Persistent {
				// A persistent sandbox keeps its files when its box is
				// lost (a host restart): it is paused, to be started
				// again with them.
				if err := m.keepFiles(ctx, sb, "its box stopped while sbx serve was not running"); err != nil {
					return err
				}
				continue
			}
			m.release(ctx, sb)
			if err := m.transition(ctx, sb, StateFailed, func(sb *store.Sandbox) {
				sb.Error = "the sandbox stopped while sbx serve was not running"
			}); err != nil {
				return err
			}
			log.Warn("sandbox died while the server was down; marked failed")
		}
	}
	return m.pruneNetworks(ctx)
}

// Close stops the timers, kills the warm pool's sandboxes and destroys the
// disks made ready for sandboxes not created yet. Sandboxes keep running.
func (m *Manager) Close() {
	for _, w := range m.warmTpl {
		w.close()
	}
	if m.warm != nil {
		m.warm.close()
	}
	m.timers.close()
	if m.disks != nil {
		m.disks.Close()
	}
}

// Templates is what the Manager knows of templates in use: who uses one,
// removing one no sandbox uses, the limits its sandboxes get.
func (m *Manager) Templates() *TemplateUse { return m.tpl }

// Snapshots is the Manager's snapshots: taken of its sandboxes, and the
// forks made from them.
func (m *Manager) Snapshots() *Snapshots { return m.snaps }

// lockSandbox reads sandbox id's record with its lock held (Snapshots).
func (m *Manager) lockSandbox(ctx context.Context, id string) (*store.Sandbox, func(), error) {
	unlock := m.lock(id)
	sb, err := m.db.GetSandbox(ctx, id)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return sb, unlock, nil
}

// upperDir is the host path of sandbox id's overlay upper layer: on its
// disk when it has one.
func (m *Manager) upperDir(id string) string {
	if fileExists(filepath.Join(m.dir(id), disk.Image)) {
		return filepath.Join(m.dir(id), disk.MountDir, "upper")
	}
	return filepath.Join(m.dir(id), "upper")
}
