package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp"
	"github.com/sbxdev/sbx/internal/tunnel"
)

// EnvdPort is the port SDKs address the sandbox agent (E2B's envd) on.
const EnvdPort = 49983

// Sandboxes is what the proxy needs of the sandbox manager: a sandbox
// resolved and running, and ways into it. internal/server adapts
// sandbox.Manager to it.
//
// Its methods are called from many goroutines at once (one per request, and
// more for connections opened while requests run), for one sandbox or many;
// an implementation must be safe for that. Each honours its context.
type Sandboxes interface {
	// EnsureRunning returns sandbox id once it is running, waking it
	// first when it is paused and its lifecycle allows that (which can take
	// as long as a resume). The proxy calls it before it forwards traffic to
	// a sandbox it holds no connections to. A sandbox that is not running is
	// an error wrapping errdefs.ErrFailedPrecondition, an unknown or killed
	// one errdefs.ErrNotFound: both are answered as a sandbox that is gone.
	EnsureRunning(ctx context.Context, id string) (Sandbox, error)
	// DialAgent connects to sandbox id's agent, which serves envd's HTTP
	// API and the tunnel to the sandbox's ports.
	DialAgent(ctx context.Context, id string) (net.Conn, error)
	// PortDialer returns a way to sandbox id's ports that does not go
	// through its agent, or nil (and no error) when its runtime has none;
	// the proxy then reaches the ports through the agent's tunnel. An error
	// wrapping errdefs.ErrFailedPrecondition means the sandbox is not
	// running now (the proxy asks again later); any other error makes the
	// proxy use the agent for this sandbox from then on. The proxy closes
	// the dialer when it drops the sandbox.
	PortDialer(ctx context.Context, id string) (PortDialer, error)
	// Killed reports whether sandbox id is being killed or is gone; the
	// proxy asks when a stream to its agent is cut.
	Killed(ctx context.Context, id string) bool
}

// Sandbox is what the proxy needs of a running sandbox's record.
type Sandbox struct {
	// ID is the sandbox's id.
	ID string
	// EnvdToken is the envd access token: the agent checks it on requests
	// for EnvdPort, and the proxy presents it to open a tunnel.
	EnvdToken string
	// TrafficToken is the traffic access token requests to the sandbox's
	// other ports must carry in TrafficTokenHeader; "" when its ports are
	// public.
	TrafficToken string
	// MaskRequestHost, when set, is the Host header requests to the
	// sandbox's ports (not EnvdPort) carry, "${PORT}" replaced by the
	// port; otherwise they carry the Host they were sent with.
	MaskRequestHost string
	// HTTPSPorts are ports whose servers speak TLS: the proxy reaches
	// them over TLS without verifying their certificates (see ports.go).
	HTTPSPorts []int
}

// PortDialer connects to TCP ports on one sandbox's loopback. DialPort may be
// called concurrently, also with Close; after Close it fails. Nothing
// listening on the port is a *tunnel.Error, as the agent's tunnel answers.
type PortDialer interface {
	DialPort(ctx context.Context, port int) (net.Conn, error)
	Close() error
}

// Config configures a Proxy.
type Config struct {
	// Domain is the sandbox domain: a Host of {port}-{sandboxID}.{Domain}
	// addresses port of sandbox sandboxID. Empty: only the headers route.
	Domain string
}

// Target is the sandbox and port a data-plane request is addressed to.
type Target struct {
	SandboxID string
	// Port is the sandbox port, -1 when the request named none that
	// parses (Serve answers it as a bad port).
	Port int
}

// Proxy forwards data-plane requests to sandboxes. Requests for EnvdPort go
// to the agent's own HTTP server over its unix socket; requests for any
// other port go to that port on the sandbox's loopback (see ports.go).
// Responses stream without buffering. Create it with New; it is safe for
// concurrent use.
type Proxy struct {
	cfg   Config
	boxes Sandboxes
	log   *slog.Logger
	// The copy buffers: of response bodies (ports.go), of request
	// bodies to agents (copy.go), and of large bodies (direct.go).
	buffers *bufferPool
	bulk    *sync.Pool
	large   *boundedPool

	mu       sync.Mutex
	backends map[string]*backend
}

// backend holds one sandbox's pooled connections.
type backend struct {
	id      string
	token   string // the envd access token, for the tunnel
	traffic string // the traffic access token; "" when the ports are public
	mask    string // Sandbox.MaskRequestHost
	https   map[int]bool
	dial    func(ctx context.Context) (net.Conn, error)
	envd    *httputil.ReverseProxy
	ports   *httputil.ReverseProxy // sandbox ports over HTTP/1.1
	h2      *httputil.ReverseProxy // sandbox ports over HTTP/2 (h2c)
	// Sandbox.HTTPSPorts: over TLS (HTTP/2 by ALPN, or HTTP/1.1), and
	// over TLS with HTTP/1.1 only, for HTTP/1.1 clients and upgrades.
	tls, tls1 *httputil.ReverseProxy
	// netns reaches ports directly (nil: through the agent); see
	// portDialer.
	netnsMu   sync.Mutex
	netnsDone bool
	netns     PortDialer
	openNetns func(context.Context) (PortDialer, error)
	direct    directPool   // connections of plain GETs (direct.go)
	buffers   *bufferPool  // the proxy's copy buffers
	large     *boundedPool // the proxy's large buffers
	log       *slog.Logger
	onErr     func(http.ResponseWriter, *http.Request, error)
	trs       []*http.Transport

	protoMu sync.Mutex
	protos  map[int]portProto // what each port speaks, as probed

	// last is when a request for the sandbox last started or ended (unix
	// nanoseconds) and open how many are in flight: idle pauses read them.
	last atomic.Int64
	open atomic.Int64
}

// New returns a proxy to the sandboxes of boxes. Tell it when a sandbox is
// killed or paused (Forget), and close it when the server stops (Close).
func New(cfg Config, boxes Sandboxes, log *slog.Logger) *Proxy {
	return &Proxy{cfg: cfg, boxes: boxes, log: log, backends: map[string]*backend{},
		buffers: newBufferPool(copyBufferSize), bulk: newBulkBuffers(),
		large: newBoundedPool(largeBufferSize, largeBuffersMax)}
}

// Route reports whether r is a data-plane request, and for which sandbox and
// port: E2b-Sandbox-Id and E2b-Sandbox-Port headers (what the e2b SDKs send
// when E2B_SANDBOX_URL is set), or a Host of the form
// {port}-{sandboxID}.{Config.Domain}. Anything else is for the control
// plane.
func (p *Proxy) Route(r *http.Request) (Target, bool) {
	domain := p.cfg.Domain
	if id := r.Header.Get("E2b-Sandbox-Id"); id != "" {
		port, err := strconv.Atoi(r.Header.Get("E2b-Sandbox-Port"))
		if err != nil {
			port = -1 // reported as a bad port by Serve
		}
		return Target{SandboxID: id, Port: port}, true
	}
	if domain == "" {
		return Target{}, false
	}
	// Ports are not compared: a domain of example.com:443 is reached as
	// 3000-id.example.com, and a domain of example.com (behind port 443)
	// may be reached on the server's own port.
	label, ok := strings.CutSuffix(strings.ToLower(stripPort(r.Host)), "."+strings.ToLower(stripPort(domain)))
	if !ok {
		return Target{}, false
	}
	portStr, id, ok := strings.Cut(label, "-")
	if !ok || strings.Contains(id, ".") {
		return Target{}, false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return Target{}, false
	}
	return Target{SandboxID: id, Port: port}, true
}

func stripPort(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

// Serve forwards r to t, which Route returned for it, and answers errors
// (a bad port, a sandbox that is gone or unreachable, a missing traffic
// token) in E2B's shape.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, t Target) {
	if t.Port < 1 || t.Port > 65535 {
		errhttp.Write(w, r, p.log, errdefs.New(errdefs.ErrInvalidArgument, "sandbox port must be between 1 and 65535"))
		return
	}
	if t.Port == EnvdPort && strings.HasPrefix(path.Clean("/"+r.URL.Path), agentapi.PrivatePrefix) {
		// The agent's own routes for sbx serve (agent.ConfigurePath).
		errhttp.Write(w, r, p.log, errdefs.New(errdefs.ErrNotFound, "no such path"))
		return
	}
	b, err := p.backend(r.Context(), t.SandboxID)
	if err == nil && t.Port != EnvdPort {
		// The agent's port has its own authentication (the envd access
		// token, checked by the agent); every other port may be private.
		err = checkTraffic(r, b.traffic)
	}
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrFailedPrecondition) {
			// The e2b SDKs read 502 from the data plane as "the sandbox
			// is gone" (isRunning() false, SandboxNotFoundError), as
			// E2B's own proxy answers; the body still says why.
			errhttp.WriteMessage(w, http.StatusBadGateway, errdefs.Message(err))
			return
		}
		errhttp.Write(w, r, p.log, err)
		return
	}
	// Streams flow both ways at once: the agent answers (and we flush its
	// headers) before the client has finished sending, and on HTTP/1.1 the
	// server would otherwise close the request body at the first flush,
	// making the backend connection fail mid-response.
	http.NewResponseController(w).EnableFullDuplex()
	// The API key authenticates to sbx, never to a sandbox: don't hand it
	// to code running inside one.
	r.Header.Del("X-API-Key")
	// The control plane also takes the key as a bearer token. Basic
	// credentials stay: they name the user envd runs processes as.
	if a := r.Header.Get("Authorization"); len(a) >= 7 && strings.EqualFold(a[:7], "bearer ") {
		r.Header.Del("Authorization")
	}
	r.Header.Del("E2b-Sandbox-Id")
	r.Header.Del("E2b-Sandbox-Port")
	r.Header.Del(TrafficTokenHeader)
	b.last.Store(time.Now().UnixNano())
	b.open.Add(1)
	defer func() {
		b.open.Add(-1)
		b.last.Store(time.Now().UnixNano())
	}()
	if t.Port == EnvdPort {
		b.envd.ServeHTTP(w, r)
		return
	}
	if b.mask != "" {
		r.Host = strings.ReplaceAll(b.mask, "${PORT}", strconv.Itoa(t.Port))
	}
	r = r.WithContext(context.WithValue(r.Context(), portKey{}, t.Port))
	if b.https[t.Port] {
		// As for plain ports: HTTP/2 from the client goes on as HTTP/2
		// where the server offers it (ALPN), HTTP/1.1 (upgrades
		// included) as HTTP/1.1.
		if r.ProtoMajor == 2 {
			b.tls.ServeHTTP(w, r)
		} else {
			b.tls1.ServeHTTP(w, r)
		}
		return
	}
	if r.ProtoMajor == 2 && b.speaksH2C(r.Context(), t.Port) {
		b.h2.ServeHTTP(w, r)
		return
	}
	if b.takesDirect(r) {
		b.serveDirect(w, r, t.Port, b.onErr)
		return
	}
	b.ports.ServeHTTP(w, r)
}

type portKey struct{}

func (p *Proxy) backend(ctx context.Context, id string) (*backend, error) {
	p.mu.Lock()
	b, ok := p.backends[id]
	p.mu.Unlock()
	if ok {
		return b, nil
	}
	sb, err := p.boxes.EnsureRunning(ctx, id)
	if err != nil {
		return nil, err
	}
	b = p.newBackend(sb)
	// Ports are reached by entering the sandbox's network namespace where
	// its runtime allows (no agent in the path), else through the agent.
	b.openNetns = func(ctx context.Context) (PortDialer, error) {
		pd, err := p.boxes.PortDialer(ctx, id)
		if err != nil && !errors.Is(err, errdefs.ErrFailedPrecondition) {
			p.log.Warn("cannot enter the sandbox's network namespace; its ports go through its agent", "sandbox_id", id, "err", err)
			return nil, nil
		}
		return pd, err
	}
	p.mu.Lock()
	if old, ok := p.backends[id]; ok {
		b.close()
		b = old
	} else {
		p.backends[id] = b
	}
	p.mu.Unlock()
	return b, nil
}

func (p *Proxy) newBackend(sb Sandbox) *backend {
	id := sb.ID
	b := &backend{
		id: id, token: sb.EnvdToken, traffic: sb.TrafficToken, mask: sb.MaskRequestHost,
		https:   map[int]bool{},
		dial:    func(ctx context.Context) (net.Conn, error) { return p.boxes.DialAgent(ctx, id) },
		protos:  map[int]portProto{},
		buffers: p.buffers, large: p.large, log: p.log,
	}
	envdTr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := b.dial(ctx)
			if err != nil {
				return nil, err
			}
			return bulkConn{c, p.bulk}, nil
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	b.envd = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "agent"
		},
		Transport:     envdTr,
		FlushInterval: -1,
		BufferPool:    p.buffers,
		ModifyResponse: endConnectStreams(func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return p.boxes.Killed(ctx, id)
		}),
		ErrorHandler: p.errorHandler(b, false),
	}
	portTr, h2Tr := b.portTransports()
	b.ports = p.portProxy(b, portTr, false)
	b.onErr = p.errorHandler(b, false)
	b.h2 = p.portProxy(b, h2Tr, true)
	for _, port := range sb.HTTPSPorts {
		b.https[port] = true
	}
	tlsTr, tls1Tr := b.tlsTransports()
	b.tls = p.portProxy(b, tlsTr, false)
	b.tls1 = p.portProxy(b, tls1Tr, false)
	b.trs = []*http.Transport{envdTr, portTr, h2Tr, tlsTr, tls1Tr}
	return b
}

// errorHandler answers a request the sandbox could not be reached for.
func (p *Proxy) errorHandler(b *backend, h2 bool) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if h2 {
			// The port may not speak HTTP/2 any more (another server
			// took it): probe again next time.
			port, _ := r.Context().Value(portKey{}).(int)
			b.forgetProto(port)
		}
		if errors.Is(err, context.Canceled) {
			return
		}
		var te *tunnel.Error
		if errors.As(err, &te) {
			// The agent's refusal (nothing listens on the port) is safe
			// to show as it is.
			errhttp.WriteMessage(w, http.StatusBadGateway, te.Message)
			return
		}
		p.log.Warn("proxy to sandbox failed", "sandbox_id", b.id, "err", err)
		errhttp.WriteMessage(w, http.StatusBadGateway, "sandbox is not reachable")
	}
}

// portProxy forwards requests to the sandbox's ports through tr.
func (p *Proxy) portProxy(b *backend, tr *http.Transport, h2 bool) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			port, _ := pr.In.Context().Value(portKey{}).(int)
			pr.Out.URL.Scheme = "http"
			if b.https[port] {
				pr.Out.URL.Scheme = "https" // the transport's DialTLSContext
			}
			// Each port gets its own connection pool: the pool key is
			// the URL host, and the dialler reads the port from it.
			pr.Out.URL.Host = portHost(port)
			pr.Out.Host = pr.In.Host // the app sees the host it was called by
			pr.SetXForwarded()
		},
		Transport:     tr,
		FlushInterval: -1,
		BufferPool:    p.buffers,
		ErrorHandler:  p.errorHandler(b, h2),
	}
}

// Forget drops sandbox id's pooled connections and its hold on the
// sandbox's network namespace, so that the next request for it resolves it
// again (EnsureRunning). The server calls it when a sandbox is killed or
// paused.
func (p *Proxy) Forget(id string) {
	p.mu.Lock()
	b, ok := p.backends[id]
	delete(p.backends, id)
	p.mu.Unlock()
	if ok {
		b.close()
	}
}

// close drops the backend's idle connections and its hold on the
// sandbox's network namespace.
func (b *backend) close() {
	for _, tr := range b.trs {
		tr.CloseIdleConnections()
	}
	b.direct.closeAll()
	b.netnsMu.Lock()
	defer b.netnsMu.Unlock()
	if b.netns != nil {
		b.netns.Close()
		b.netns = nil
	}
	b.netnsDone = true
}

// portDialer returns the backend's way into the sandbox's network
// namespace, opened on first use (nil: ports go through the agent). The
// envd port never needs it, and opening it costs runtime state calls that a
// new sandbox's first command must not wait for.
func (b *backend) portDialer(ctx context.Context) (PortDialer, error) {
	b.netnsMu.Lock()
	defer b.netnsMu.Unlock()
	if b.netnsDone || b.openNetns == nil {
		return b.netns, nil
	}
	pd, err := b.openNetns(ctx)
	if err != nil {
		return nil, err // not running now: ask again next time
	}
	b.netns, b.netnsDone = pd, true
	return pd, nil
}

// Activity reports when a request for sandbox id last started or ended and
// how many are in flight (zero values for a sandbox the proxy holds nothing
// for); the Manager's idle pauses read it.
func (p *Proxy) Activity(id string) (time.Time, int) {
	p.mu.Lock()
	b, ok := p.backends[id]
	p.mu.Unlock()
	if !ok {
		return time.Time{}, 0
	}
	return time.Unix(0, b.last.Load()), int(b.open.Load())
}

// Close drops every sandbox's pooled connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	ids := make([]string, 0, len(p.backends))
	for id := range p.backends {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	for _, id := range ids {
		p.Forget(id)
	}
}
