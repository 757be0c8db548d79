package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/gen/filesystem/filesystemconnect"
	"github.com/sbxdev/sbx/gen/process/processconnect"
	"github.com/sbxdev/sbx/internal/agentapi"
)

// StopGrace is how long processes get between SIGTERM and SIGKILL when the
// agent stops.
const StopGrace = 2 * time.Second

// Agent is the in-sandbox agent: its services, its processes and its reaper.
// Create it with [New]; serve it with [Agent.Serve] (or mount
// [Agent.Handler] on a server of your own); end it with [Agent.Close].
type Agent struct {
	cfgMu  sync.RWMutex
	cfg    agentapi.Config // guarded by cfgMu; read with config()
	log    *slog.Logger
	mux    *http.ServeMux // authenticated routes
	root   *http.ServeMux // /health and everything else through requireToken
	reaper *reaper
	procs  *table
	// watches holds the filesystem watchers made by CreateWatcher.
	watches *watcherTable
}

// New checks cfg and returns an agent whose reaper is already collecting
// children. It refuses a configuration without an access token.
func New(cfg agentapi.Config, logger *slog.Logger) (*Agent, error) {
	cfg = cfg.WithDefaults()
	if cfg.AccessToken == "" {
		// Fail closed: an agent without a token would let anything that
		// reaches its socket run processes as root in the sandbox.
		return nil, errors.New("new agent: accessToken is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r, err := newReaper(logger)
	if err != nil {
		return nil, fmt.Errorf("new agent: %w", err)
	}
	a := &Agent{
		cfg:     cfg,
		log:     logger,
		mux:     http.NewServeMux(),
		root:    http.NewServeMux(),
		reaper:  r,
		procs:   newTable(),
		watches: &watcherTable{m: map[string]*bufferedWatch{}},
	}
	a.Handle(processconnect.NewProcessHandler(processService{a}, a.ConnectOptions()...))
	a.Handle(filesystemconnect.NewFilesystemHandler(filesystemService{a}, a.ConnectOptions()...))
	a.mux.HandleFunc(agentapi.TunnelPath, a.serveTunnel)
	a.mux.HandleFunc("POST "+agentapi.ConfigurePath, a.serveConfigure)
	a.root.Handle(FilesPath, a.filesRoute()) // token or URL signature; see filesRoute
	a.root.HandleFunc("GET "+agentapi.HealthPath, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	a.root.Handle("/", a.requireToken(a.mux))
	warmMessages()
	return a, nil
}

// ConnectOptions are the handler options every Connect service mounted on
// the agent should use: they map error classes to Connect codes.
func (a *Agent) ConnectOptions() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithInterceptors(errorInterceptor{a}),
		// Process events are mostly a few bytes; setting up a gzip
		// writer for each costs more than it saves (a tenth of the
		// agent's CPU per command when clients accept gzip).
		connect.WithCompressMinBytes(4 << 10),
	}
}

// Handle mounts h at pattern, behind the access token check. Other services
// (filesystem, /files) are mounted this way before [Agent.Serve].
func (a *Agent) Handle(pattern string, h http.Handler) {
	a.mux.Handle(pattern, h)
}

// Handler returns the agent's HTTP handler: /health, then every other route
// behind the access token.
func (a *Agent) Handler() http.Handler { return a.root }

// config returns the agent's current configuration.
func (a *Agent) config() agentapi.Config {
	a.cfgMu.RLock()
	defer a.cfgMu.RUnlock()
	return a.cfg
}

// serveConfigure serves agentapi.ConfigurePath: a new configuration from
// sbx serve, as when a sandbox of the warm pool is handed to a create.
func (a *Agent) serveConfigure(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 32<<20))
	if err == nil {
		var cfg agentapi.Config
		if cfg, err = agentapi.ParseConfig(b); err == nil {
			err = a.Reconfigure(cfg)
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Reconfigure replaces the agent's configuration, as when a sandbox restored
// from a snapshot becomes a new sandbox with its own token and id. Running
// processes keep their environment; new ones get cfg's. It refuses a
// configuration without an access token, like New.
func (a *Agent) Reconfigure(cfg agentapi.Config) error {
	cfg = cfg.WithDefaults()
	if cfg.AccessToken == "" {
		return errors.New("reconfigure agent: accessToken is required")
	}
	a.cfgMu.Lock()
	a.cfg = cfg
	a.cfgMu.Unlock()
	a.log.Info("agent reconfigured", "sandbox_id", cfg.SandboxID)
	return nil
}

// Serve serves the agent's handler on ln with HTTP/1.1 and h2c until ctx is
// done, then stops every process (see [Agent.StopProcesses]) and closes the
// server. It returns nil after a stop through ctx.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	_, err := a.ServeUntil(ctx, ln, nil)
	return err
}

// ServeUntil is Serve that also returns, with quiesced true, when quiesce is
// closed: then the listener and every connection accepted on it (hijacked
// ones too) are closed, and processes keep running. The runsc runtime uses
// this before a checkpoint, since gVisor cannot save a socket bound on the
// host; Serve is called again afterwards on a new listener.
func (a *Agent) ServeUntil(ctx context.Context, ln net.Listener, quiesce <-chan struct{}) (quiesced bool, err error) {
	var tl *trackingListener
	if quiesce != nil {
		// Only then: wrapping hides the connection's own type from the
		// HTTP server's copy fast paths.
		tl = &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}}
		ln = tl
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           a.Handler(),
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("agent serving", "addr", ln.Addr().String(), "pid", os.Getpid())
	select {
	case err := <-errc:
		return false, fmt.Errorf("serve: %w", err)
	case <-quiesce:
		a.log.Info("agent quiescing: closing its listener and connections")
		_ = srv.Close()
		tl.closeAll()
		<-errc
		return true, nil
	case <-ctx.Done():
	}
	a.log.Info("agent stopping")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StopGrace+time.Second)
	defer cancel()
	a.StopProcesses(stopCtx)
	// Let streams deliver the end events of the processes just stopped, then
	// close what is left: streams of nothing never end on their own.
	drainCtx, cancelDrain := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancelDrain()
	_ = srv.Shutdown(drainCtx)
	_ = srv.Close()
	<-errc
	return false, nil
}

// trackingListener remembers the connections it accepted until they are
// closed, so that closeAll can end every one, hijacked ones included.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// StopProcesses sends SIGTERM to every process group, waits up to
// [StopGrace] (or until ctx is done) for them to end, and sends SIGKILL to
// what is left. As PID 1 it signals every process in the sandbox, orphans
// included; elsewhere only the processes the agent started (kill(-1) outside
// a sandbox would signal the whole host).
func (a *Agent) StopProcesses(ctx context.Context) {
	pid1 := os.Getpid() == 1
	procs := a.procs.list()
	a.signalAll(pid1, syscall.SIGTERM)

	if !a.waitStopped(ctx, procs, pid1, StopGrace) {
		a.signalAll(pid1, syscall.SIGKILL)
		a.waitStopped(ctx, procs, pid1, time.Second)
	}
}

// waitStopped waits up to d (or until ctx is done) for every process in
// procs to end and, as PID 1, for the sandbox to have no other process left.
// It reports whether that happened.
func (a *Agent) waitStopped(ctx context.Context, procs []*process, pid1 bool, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	if !pid1 {
		return true
	}
	// Orphans have no done channel; poll, this happens once per sandbox.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for a.reaper.hasChildren() {
		select {
		case <-tick.C:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (a *Agent) signalAll(pid1 bool, sig syscall.Signal) {
	if pid1 {
		// kill(-1) from PID 1 reaches every process but the agent itself.
		if err := unix.Kill(-1, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			a.log.Warn("signal all processes", "signal", sig.String(), "err", err)
		}
		return
	}
	for _, p := range a.procs.list() {
		if err := p.signal(sig); err != nil {
			a.log.Debug("signal process", "pid", p.pid, "signal", sig.String(), "err", err)
		}
	}
}

// Close stops the reaper. Processes still running are left alone; call
// [Agent.StopProcesses] first to end them.
func (a *Agent) Close() error {
	a.watches.closeAll()
	a.reaper.close()
	return nil
}
