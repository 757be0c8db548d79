// Package server wires sbx serve together: the store, the template store, the
// runtime, the sandbox Manager, the HTTP API (control plane) and the proxy
// (data plane) behind one handler, with start-up recovery and graceful
// shutdown.
//
// Start-up, in order:
//
//  1. take the data directory's lock (one server per data directory);
//  2. open the database and, on first start, create the admin API key;
//  3. re-adopt sandboxes that kept running while the server was down;
//  4. listen (answering 503 "starting" until ready) and start sending
//     webhooks (the outbox's pending deliveries first);
//  5. build the default template if it is missing, with progress;
//  6. report ready.
//
// Shutdown stops accepting, drains requests under a deadline and closes
// components in reverse order. Sandboxes keep running.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/api"
	"github.com/sbxdev/sbx/internal/build"
	"github.com/sbxdev/sbx/internal/dashboard"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/identity"
	"github.com/sbxdev/sbx/internal/objstore"
	"github.com/sbxdev/sbx/internal/runtime/bundle"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/internal/volume"
)

// Config is sbx serve's configuration.
type Config struct {
	Listen         string
	DataDir        string
	TemplatesDir   string // default DataDir/templates
	AgentPath      string // default: sbx-agent beside the running executable
	RuncPath       string // default runc.DefaultBinary
	RunscPath      string // default runsc.DefaultBinary
	Runtime        string // default runtime of new sandboxes (default "runc")
	Domain         string // default "localhost:<port>"
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	CPUs           float64
	MemoryMB       int64
	MaxCPUs        float64
	MaxMemoryMB    int64
	ReadyTimeout   time.Duration
	Pids           int64
	DiskMB         int64
	MaxFork        int // most copies per fork request (default 10)
	// VolumeSizeMB is the quota of a volume whose create names none;
	// VolumeMaxSizeMB bounds what a create may ask for (0: defaults).
	VolumeSizeMB, VolumeMaxSizeMB int64

	// CapacityCPUs and CapacityMemoryMB bound what sandboxes holding a
	// box reserve together (0: no bound); see sandbox.Config.
	CapacityCPUs     float64
	CapacityMemoryMB int64

	// WarmPool sizes the pool of sandboxes kept started ahead of creates
	// (Min 0 and Max 0: off).
	WarmPool sandbox.WarmPoolConfig
	// IDShift is the first host id of the sandboxes' user namespaces:
	// sandbox ids 0..65535 are host ids IDShift..IDShift+65535. Zero runs
	// sandboxes without a user namespace (root in a sandbox is host root,
	// held in by capabilities and seccomp only).
	IDShift uint32
	// Net configures sandbox networking (internal/network); see
	// NetworkConfig.
	Net NetworkConfig
	// Events configures webhooks and the retention of events and audit
	// records; see EventsConfig.
	Events EventsConfig
	// AdminKey, when set and no key exists yet, becomes the admin key.
	AdminKey string
	// Progress receives template build progress and the first-start key
	// notice (stderr for the CLI).
	Progress io.Writer
	// Ready, if set, is called with the listening address once ready.
	Ready func(addr string)
	// MetricsListen, when set, is the address /metrics (Prometheus) is
	// served on, apart from the API.
	MetricsListen string
	// RateLimit and CreateRateLimit are the per-key limits on API calls
	// and on sandbox creates (api.Config).
	RateLimit, CreateRateLimit api.RateLimit
	// MetricsInterval is the time between resource samples of running
	// sandboxes (default usage.DefaultInterval).
	MetricsInterval time.Duration
	// TLSCert and TLSKey, when set, are PEM files of the certificate
	// (chain) and its key: the server then speaks HTTPS only (HTTP/2 by
	// ALPN), reloading the files when they change.
	TLSCert, TLSKey string
	// Store is the database (store.Open's argument): default
	// DataDir/sbx.db.
	Store string
	// Node names this server among the nodes sharing a Postgres store;
	// its sandboxes and snapshots are recorded as its own.
	Node string
	// Advertise, when set, is the base URL other nodes of a fleet reach
	// this one at: the node then routes requests for other nodes'
	// sandboxes to them and places creates (fleet.go). It needs a
	// Postgres Store and a ClusterKey.
	Advertise string
	// PlacementK is how many random live nodes a create compares
	// (--placement-k); 0 is the default, 2.
	PlacementK int
	// ClusterKey authenticates the requests nodes forward to one another.
	ClusterKey string
	// ObjectStore, when set, is the s3:// URL of the bucket that templates
	// are published to and fetched from (internal/objstore).
	ObjectStore string
	// OIDCIssuer is the issuer URL of sandboxes' workload identity
	// tokens (internal/identity), where relying parties fetch its
	// discovery document and keys; default http(s)://Domain.
	OIDCIssuer string
}

// Run runs sbx serve until ctx is cancelled.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	var idmap *sandbox.IDMap
	if cfg.IDShift != 0 {
		idmap = &sandbox.IDMap{HostID: cfg.IDShift, Size: template.IDRange}
		// Boxes resolve their rootfs and the agent binary as their mapped
		// root, an unprivileged host uid: the paths must be searchable.
		if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		if err := searchable(cfg.DataDir); err != nil {
			return err
		}
	}
	var certs *certLoader
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return errors.New("TLS needs both --tls-cert and --tls-key")
		}
		c, err := newCertLoader(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			return err
		}
		certs = c
	}
	unlock, err := lockDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if cfg.TemplatesDir == "" {
		cfg.TemplatesDir = filepath.Join(cfg.DataDir, "templates")
	}
	if cfg.AgentPath == "" {
		cfg.AgentPath, err = findAgent()
		if err != nil {
			return err
		}
	}
	if _, err := os.Stat(cfg.AgentPath); err != nil {
		return fmt.Errorf("agent binary: %w", err)
	}
	if idmap != nil {
		if err := searchable(filepath.Dir(cfg.AgentPath)); err != nil {
			return fmt.Errorf("agent binary: %w", err)
		}
	}

	if cfg.Store == "" {
		cfg.Store = filepath.Join(cfg.DataDir, "sbx.db")
	}
	if cfg.Node == "" {
		if store.IsPostgres(cfg.Store) {
			return errors.New("a shared (postgres) store needs a --node name")
		}
		cfg.Node = "local"
	}
	if err := checkFleet(cfg); err != nil {
		return err
	}
	whole, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer whole.Close()
	db := whole.ForNode(cfg.Node)
	if !store.IsPostgres(cfg.Store) {
		// One server owns a SQLite file: what it holds is this node's,
		// whatever name it was recorded under.
		if err := db.ClaimAll(ctx); err != nil {
			return err
		}
	}
	log.Info("store open", "store", store.Redact(cfg.Store), "node", cfg.Node)
	keys, err := api.NewKeys(ctx, db)
	if err != nil {
		return err
	}
	if keys.Empty() {
		_, key, err := keys.Create(ctx, "admin", cfg.AdminKey, true)
		if err != nil && keys.Refresh(ctx) != nil {
			return fmt.Errorf("create admin key: %w", err)
		}
		switch {
		case err != nil && !keys.Empty():
			// Another node sharing the database made the first key
			// (the same one, from the same SBX_API_KEY) meanwhile.
			log.Info("admin API key created by another node")
		case err != nil:
			return fmt.Errorf("create admin key: %w", err)
		case cfg.AdminKey == "":
			fmt.Fprintf(cfg.Progress, "\nsbx: created the admin API key (shown only this once; store it now):\n\n    %s\n\nexport SBX_API_KEY=%s\n\n", key, key)
		default:
			log.Info("admin API key set from SBX_API_KEY")
		}
	}
	if store.IsPostgres(cfg.Store) {
		// Other nodes create and revoke keys in the shared database; a
		// revoked key must stop working here too, within seconds.
		kctx, stopKeys := context.WithCancel(ctx)
		defer stopKeys() // before the store closes
		go refreshKeys(kctx, keys, keyRefresh, log)
	}

	templates, err := template.NewStore(cfg.TemplatesDir, log)
	if err != nil {
		return err
	}
	templates.IDShift = cfg.IDShift
	var bucket *objstore.Bucket
	if cfg.ObjectStore != "" {
		bucket, err = objstore.Open(ctx, cfg.ObjectStore, objstore.EnvCredentials())
		if err != nil {
			return fmt.Errorf("--object-store: %w", err)
		}
		templates.Remote = bucket
		log.Info("object store", "url", bucket.String())
	}
	keyring, err := openSecrets(ctx, cfg.DataDir, db, log)
	if err != nil {
		return err
	}
	ids, err := identity.Open(cfg.DataDir, cfg.OIDCIssuer)
	if err != nil {
		return fmt.Errorf("--oidc-issuer: %w", err)
	}
	netw, err := startNetwork(ctx, cfg, secretSource{db: db, keys: keyring, ids: ids}, log)
	if err != nil {
		return err
	}
	if netw != nil {
		defer netw.Close() // after the Manager's Close (defers run in reverse)
	}
	vols, err := volume.New(volume.Config{
		DataDir:       cfg.DataDir,
		DB:            db,
		DefaultSizeMB: cfg.VolumeSizeMB,
		MaxSizeMB:     cfg.VolumeMaxSizeMB,
		IDShift:       cfg.IDShift,
		Over:          []store.State{store.State(sandbox.StateKilled), store.State(sandbox.StateFailed)},
		Logger:        log,
	})
	if err != nil {
		return err
	}
	mcfg := sandbox.Config{
		DataDir:         cfg.DataDir,
		AgentPath:       cfg.AgentPath,
		DefaultTimeout:  cfg.DefaultTimeout,
		MaxTimeout:      cfg.MaxTimeout,
		DefaultCPUs:     cfg.CPUs,
		DefaultMemoryMB: cfg.MemoryMB,
		DefaultPids:     cfg.Pids,
		DefaultDiskMB:   cfg.DiskMB,
		MaxCPUs:         cfg.MaxCPUs,
		MaxMemoryMB:     cfg.MaxMemoryMB,
		ReadyTimeout:    cfg.ReadyTimeout,
		IDMap:           idmap,
		MaxFork:         cfg.MaxFork,
		WarmPool:        cfg.WarmPool,
		Network:         netIface(netw),
		Volumes:         vols,

		CapacityCPUs:     cfg.CapacityCPUs,
		CapacityMemoryMB: cfg.CapacityMemoryMB,
	}
	if bucket != nil {
		// Snapshots and paused sandboxes go to the bucket too, and other
		// nodes' are found in the whole store.
		mcfg.Remote, mcfg.Fleet = bucket, whole
	}
	evs := newEvents(cfg, db, log)
	defer evs.stop() // before the database closes
	// The dashboard's live sandbox list hears the same events as the
	// webhooks.
	hub := dashboard.NewHub()
	mcfg.Events = dashboard.Sinks{evs.disp, hub}
	if err := runtimes(&mcfg, cfg, log); err != nil {
		return err
	}
	mgr, err := sandbox.New(mcfg, templateSource{templates, cfg.Progress}, db, log)
	if err != nil {
		return err
	}
	defer mgr.Close()
	dash := dashboard.New(dashboard.Config{Manager: mgr, Hub: hub, Logger: log})
	defer dash.Close() // before the Manager's
	sessions := api.NewSessions(db, keys)
	ssctx, stopSessions := context.WithCancel(ctx)
	defer stopSessions() // before the store closes
	go keepSessions(ssctx, sessions, store.IsPostgres(cfg.Store), log)
	builds, err := build.NewBuilds(build.NewBuilder(templates, mgr, log), filepath.Join(cfg.DataDir, "builds"), filepath.Join(cfg.DataDir, "build-files"), log)
	if err != nil {
		return err
	}
	defer builds.Close()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = killLost(rctx, cfg, whole, mgr, log)
	if err == nil {
		err = mgr.Reconcile(rctx)
	}
	if err == nil {
		err = builds.KillLeftovers(rctx)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("reconcile sandboxes: %w", err)
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	addr := ln.Addr().String()
	if cfg.Domain == "" {
		_, port, _ := net.SplitHostPort(addr)
		cfg.Domain = "localhost:" + port
	}
	if cfg.OIDCIssuer == "" {
		scheme := "http"
		if certs != nil {
			scheme = "https"
		}
		if err := ids.SetURL(scheme + "://" + cfg.Domain); err != nil {
			ln.Close()
			return fmt.Errorf("oidc issuer from --domain (set --oidc-issuer): %w", err)
		}
	}
	met, stopMetrics, err := startPrometheus(cfg, db, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopMetrics()
	evs.start(ctx, addr)
	var drain *drainer
	var drainAPI api.Drainer // nil unless a fleet node
	if cfg.Advertise != "" {
		drain = &drainer{self: cfg.Node, whole: whole, mine: db, mgr: mgr, bg: ctx, log: log.With("component", "drain")}
		drainAPI = drain
	}
	apiSrv := api.New(api.Config{Drainer: drainAPI, Domain: cfg.Domain, Builds: builds, Builtins: templates, Nodes: whole, Fleet: whole, Events: db, WebhookURLs: evs.guard, Volumes: vols, Secrets: db, SecretKeys: keyring, Metrics: db, Usage: db, Observer: apiObserver(met), Identity: ids.Handler(),
		RateLimit: cfg.RateLimit, CreateRateLimit: cfg.CreateRateLimit, Sessions: sessions, Dashboard: dash}, mgr, keys, templates, log)
	px := newProxy(cfg.Domain, mgr, met, log)
	defer px.Close()
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c, for gRPC/Connect clients and preview URLs
	protocols.SetHTTP2(true)            // over TLS, by ALPN
	var root http.Handler = handler{proxy: px, api: apiSrv, log: log, met: met}
	if cfg.Advertise != "" {
		fr := newFleetRouter(cfg.Node, cfg.ClusterKey, whole, root, px.Route, log)
		if cfg.PlacementK > 0 {
			fr.k = cfg.PlacementK
		}
		if bucket != nil {
			fr.boxes = managerBoxes{mgr}
			fr.authorize = func(r *http.Request, team string) bool {
				k, ok := keys.Verify(r.Header.Get("X-API-Key"))
				return ok && teamOrDefault(k.Team) == teamOrDefault(team)
			}
		}
		drain.f = fr
		// The dashboard's list is the whole fleet's.
		dash.SetPeers(fr.dashboardPeers)
		root = fr
	}
	lease := newNodeLease(whole, cfg.Node, cfg.DataDir, log)
	lease.node.Advertise = cfg.Advertise
	lease.rejoin = func(ctx context.Context) error { return killLost(ctx, cfg, whole, mgr, log) }
	lease.measure = func(ctx context.Context, m *store.NodeMachine) {
		if infos, err := templates.List(ctx); err == nil {
			for _, in := range infos {
				m.Templates = append(m.Templates, in.Name)
			}
		}
		m.Pooled = mgr.Warm().Ready()
	}
	if cfg.Advertise != "" {
		root = fence{lease: lease, next: root, log: log}
	}
	hs := &http.Server{
		Handler:           root,
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	scheme := "http"
	if certs != nil {
		scheme = "https"
		hs.TLSConfig = certs.tlsConfig()
		go func() { serveErr <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { serveErr <- hs.Serve(ln) }()
	}
	log.Info("listening", "addr", addr, "scheme", scheme, "data_dir", cfg.DataDir, "domain", cfg.Domain)

	// A base an older sbx built from another definition is retired
	// (renamed, its users following it) so that the base is built anew.
	retireBase(ctx, mgr, templates, log)
	if err := templates.EnsureBase(ctx, cfg.Progress); err != nil {
		hs.Close()
		return fmt.Errorf("build base template: %w", err)
	}
	if err := templates.EnsureShifted(ctx); err != nil {
		hs.Close()
		return fmt.Errorf("prepare templates for the sandbox id range: %w", err)
	}
	// This node joins the nodes table (GET /nodes) once it is ready, and
	// leaves it when it stops.
	if err := lease.renew(ctx); err != nil {
		hs.Close()
		return err
	}
	leaseCtx, stopLease := context.WithCancel(ctx)
	leaseDone := make(chan struct{})
	go func() { defer close(leaseDone); lease.run(leaseCtx) }()
	defer func() { stopLease(); <-leaseDone }()
	if cfg.Advertise != "" {
		lw := &lossWatch{self: cfg.Node, db: whole, lease: lease, events: evs.disp, log: log, now: time.Now}
		if bucket != nil {
			lw.recover = mgr.Remote().RecoverLost
		}
		lossDone := make(chan struct{})
		go func() { defer close(lossDone); lw.run(leaseCtx) }()
		defer func() { stopLease(); <-lossDone }()
	}
	if bucket != nil {
		// Every node collects; removing what is already gone is no error.
		gc := &sandbox.Collector{Bucket: bucket, Store: whole, Log: log.With("component", "collect")}
		gcDone := make(chan struct{})
		go func() { defer close(gcDone); gc.Run(leaseCtx, sandbox.DefaultCollectEvery) }()
		defer func() { stopLease(); <-gcDone }()
	}
	// Other servers sharing the bucket fetch the base template rather
	// than build it: publish it unless the bucket has one.
	if err := templates.Publish(ctx, template.BaseName, false); err != nil {
		hs.Close()
		return fmt.Errorf("publish base template: %w", err)
	}
	removeStaleBuiltins(ctx, mgr, templates, log)
	apiSrv.SetReady(true)
	mgr.Warm().Start()
	startTemplatePools(ctx, mgr, templates, log)
	stopSampler := startSampler(ctx, cfg, mcfg.Runtimes, netw, db, log)
	defer stopSampler()
	log.Info("ready", "addr", addr, "scheme", scheme)
	if cfg.Ready != nil {
		cfg.Ready(addr)
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down; sandboxes keep running")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// Long-lived streams (process output, PTYs) do not end by
		// themselves; cut them after the deadline.
		hs.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// killLost kills the boxes of this node's sandboxes that the fleet ended
// while the node was away, and of those now owned by another node (a
// shared store only).
func killLost(ctx context.Context, cfg Config, whole *store.DB, mgr *sandbox.Manager, log *slog.Logger) error {
	if !store.IsPostgres(cfg.Store) {
		return nil
	}
	foreign, err := foreignBoxes(ctx, whole, cfg.DataDir, cfg.Node)
	if err != nil {
		return fmt.Errorf("find sandboxes now owned elsewhere: %w", err)
	}
	n, err := mgr.Remote().KillLost(ctx, foreign)
	if err != nil {
		return fmt.Errorf("kill the boxes of sandboxes ended elsewhere: %w", err)
	}
	if n > 0 {
		log.Warn("killed the boxes of sandboxes the fleet ended or moved while this node was away", "boxes", n)
	}
	return nil
}

// checkFleet checks the fleet flags: a node of a shared store needs a
// name safe in a path, --advertise needs a shared store and a cluster key,
// and a cluster key alone would do nothing.
func checkFleet(cfg Config) error {
	if store.IsPostgres(cfg.Store) && !bundle.ValidNodeName(cfg.Node) {
		// It names the node's cgroups (/sbx/nodes/<node>).
		return fmt.Errorf("--node %q: a node of a shared store needs a name of letters, digits, '.', '_' and '-' (64 at most), starting with a letter or digit", cfg.Node)
	}
	switch {
	case cfg.Advertise == "" && cfg.ClusterKey != "":
		return errors.New("--cluster-key needs --advertise")
	case cfg.Advertise == "":
		return nil
	case !store.IsPostgres(cfg.Store):
		return errors.New("--advertise needs a shared postgres --store")
	case len(cfg.ClusterKey) < 16:
		return errors.New("--advertise needs a --cluster-key (SBX_CLUSTER_KEY) of at least 16 characters")
	}
	u, err := url.Parse(cfg.Advertise)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("--advertise %q: want a base URL such as http://10.0.0.2:49982", cfg.Advertise)
	}
	return nil
}

// templateSource adapts the template store to what the Manager needs. A
// template this server lacks is fetched from the object store, if any.
type templateSource struct {
	s        *template.Store
	progress io.Writer
}

func (t templateSource) Get(ctx context.Context, name string) (sandbox.Template, error) {
	info, err := t.s.Get(name)
	if errors.Is(err, errdefs.ErrNotFound) && t.s.Remote != nil {
		info, err = t.s.Fetch(ctx, name, t.progress)
	}
	if err != nil {
		return sandbox.Template{}, err
	}
	return sandbox.Template{
		Name:         info.Name,
		Layers:       info.LayerPaths,
		DefaultUser:  info.Defaults.User,
		CPUs:         info.Defaults.CPUs,
		MemoryMB:     info.Defaults.MemoryMB,
		Env:          info.Env,
		Workdir:      info.Workdir,
		StartCmd:     info.StartCmd,
		ReadyCmd:     info.ReadyCmd,
		ReadyPort:    info.ReadyPort,
		ReadyTimeout: time.Duration(info.ReadyTimeoutSeconds) * time.Second,
	}, nil
}

// lockDir takes an exclusive flock on dir/sbx.lock so that two servers never
// manage the same sandboxes.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "sbx.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another sbx serve: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// findAgent looks for sbx-agent beside the running executable, then in PATH.
func findAgent() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "sbx-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "sbx-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("sbx-agent not found beside sbx or in PATH; set --agent")
}

// searchable checks that every directory from dir up to / can be searched by
// other users (o+x), as a box's mapped root needs to reach its rootfs.
func searchable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := abs; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by other users (mode %v): sandboxes run as unprivileged host ids and must reach their files through it; chmod o+x %s", p, st.Mode().Perm(), p)
		}
		if p == "/" {
			return nil
		}
	}
}

// keyRefresh is how often a node on a shared store reloads the API keys.
const keyRefresh = 2 * time.Second

// refreshKeys reloads keys every period until ctx ends.
func refreshKeys(ctx context.Context, keys *api.Keys, period time.Duration, log *slog.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := keys.Refresh(ctx); err != nil && ctx.Err() == nil {
				log.Warn("reload API keys", "err", err)
			}
		}
	}
}

// keepSessions prunes expired dashboard sessions hourly and, on a shared
// store, ends every few seconds the streams of sessions another node
// revoked (api.Sessions.Recheck).
func keepSessions(ctx context.Context, ss *api.Sessions, shared bool, log *slog.Logger) {
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	var recheck <-chan time.Time
	if shared {
		t := time.NewTicker(keyRefresh)
		defer t.Stop()
		recheck = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			if _, err := ss.Prune(ctx); err != nil && ctx.Err() == nil {
				log.Warn("prune dashboard sessions", "err", err)
			}
		case <-recheck:
			ss.Recheck(ctx)
		}
	}
}

// managerBoxes is the Manager as the fleet router takes sandboxes over
// with it.
type managerBoxes struct{ *sandbox.Manager }

func (m managerBoxes) Adopt(ctx context.Context, id string) (*store.Sandbox, error) {
	return m.Remote().Adopt(ctx, id)
}

func (m managerBoxes) Recover(ctx context.Context, id string) (*sandbox.Recovered, error) {
	return m.Remote().Recover(ctx, id)
}

func (m managerBoxes) SnapshotPublished(ctx context.Context, id string) (bool, error) {
	return m.Snapshots().Published(ctx, id)
}

func teamOrDefault(team string) string {
	if team == "" {
		return store.DefaultTeamID
	}
	return team
}
