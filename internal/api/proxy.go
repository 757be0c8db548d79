package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/tunnel"
)

// EnvdPort is the port SDKs address the sandbox agent (E2B's envd) on.
const EnvdPort = 49983

// target is the sandbox and port a data-plane request is addressed to.
type target struct {
	id   string
	port int
}

// proxy forwards data-plane requests to sandboxes. Requests for EnvdPort go
// to the agent's own HTTP server over its unix socket; requests for any
// other port go through the agent's tunnel to that port inside the
// sandbox's network namespace. Responses stream without buffering.
type proxy struct {
	mgr *sandbox.Manager
	log *slog.Logger

	mu       sync.Mutex
	backends map[string]*backend
}

// backend holds one sandbox's pooled connections.
type backend struct {
	token string
	envd  *httputil.ReverseProxy
	ports *httputil.ReverseProxy
	trs   []*http.Transport
}

func newProxy(mgr *sandbox.Manager, log *slog.Logger) *proxy {
	return &proxy{mgr: mgr, log: log, backends: map[string]*backend{}}
}

// target finds the sandbox a request is for: E2b-Sandbox-Id and
// E2b-Sandbox-Port headers (what the e2b SDKs send when E2B_SANDBOX_URL is
// set), or a Host of the form {port}-{sandboxID}.{domain}.
func (p *proxy) target(r *http.Request, domain string) (target, bool) {
	if id := r.Header.Get("E2b-Sandbox-Id"); id != "" {
		port, err := strconv.Atoi(r.Header.Get("E2b-Sandbox-Port"))
		if err != nil {
			port = -1 // reported as a bad port by serve
		}
		return target{id: id, port: port}, true
	}
	if domain == "" {
		return target{}, false
	}
	host := r.Host
	suffix := "." + domain
	if !strings.HasSuffix(host, suffix) {
		// Allow the domain without the server's port, e.g. a Host of
		// 3000-id.example.com when Domain is example.com:443.
		if h, _, err := net.SplitHostPort(domain); err == nil && strings.HasSuffix(stripPort(host), "."+h) {
			host, suffix = stripPort(host), "."+h
		} else {
			return target{}, false
		}
	}
	label := strings.TrimSuffix(host, suffix)
	portStr, id, ok := strings.Cut(label, "-")
	if !ok || strings.Contains(id, ".") {
		return target{}, false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return target{}, false
	}
	return target{id: id, port: port}, true
}

func stripPort(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func (p *proxy) serve(w http.ResponseWriter, r *http.Request, t target) {
	if t.port < 1 || t.port > 65535 {
		writeError(w, r, p.log, errdefs.New(errdefs.ErrInvalidArgument, "sandbox port must be between 1 and 65535"))
		return
	}
	b, err := p.backend(r.Context(), t.id)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrFailedPrecondition) {
			// The e2b SDKs read 502 from the data plane as "the sandbox
			// is gone" (isRunning() false, SandboxNotFoundError), as
			// E2B's own proxy answers; the body still says why.
			writeJSON(w, http.StatusBadGateway, errorBody{Code: http.StatusBadGateway, Message: errdefs.Message(err)})
			return
		}
		writeError(w, r, p.log, err)
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
	if t.port == EnvdPort {
		b.envd.ServeHTTP(w, r)
		return
	}
	b.ports.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), portKey{}, t.port)))
}

type portKey struct{}

func (p *proxy) backend(ctx context.Context, id string) (*backend, error) {
	p.mu.Lock()
	b, ok := p.backends[id]
	p.mu.Unlock()
	if ok {
		return b, nil
	}
	sb, err := p.mgr.GetRunning(ctx, id)
	if err != nil {
		return nil, err
	}
	b = p.newBackend(sb)
	p.mu.Lock()
	if old, ok := p.backends[id]; ok {
		b = old
	} else {
		p.backends[id] = b
	}
	p.mu.Unlock()
	return b, nil
}

func (p *proxy) newBackend(sb *sandbox.Sandbox) *backend {
	id := sb.ID
	b := &backend{token: sb.EnvdToken}
	dialAgent := func(ctx context.Context, _, _ string) (net.Conn, error) { return p.mgr.DialAgent(ctx, id) }
	envdTr := &http.Transport{
		DialContext:         dialAgent,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	portTr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			port, _ := ctx.Value(portKey{}).(int)
			conn, err := p.mgr.DialAgent(ctx, id)
			if err != nil {
				return nil, err
			}
			tc, err := tunnel.Dial(ctx, conn, b.token, port)
			if err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		},
		// Each port gets its own pool: the pool key is the URL host,
		// which the rewrite below sets per port.
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	b.trs = []*http.Transport{envdTr, portTr}
	errHandler := func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, context.Canceled) {
			return
		}
		var te *tunnel.Error
		if errors.As(err, &te) {
			// The agent's refusal (nothing listens on the port) is safe
			// to show as it is.
			writeJSON(w, http.StatusBadGateway, errorBody{Code: http.StatusBadGateway, Message: te.Message})
			return
		}
		p.log.Warn("proxy to sandbox failed", "sandbox_id", id, "err", err)
		writeJSON(w, http.StatusBadGateway, errorBody{Code: http.StatusBadGateway, Message: "sandbox is not reachable"})
	}
	b.envd = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "agent"
		},
		Transport:     envdTr,
		FlushInterval: -1,
		ErrorHandler:  errHandler,
	}
	b.ports = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			port, _ := pr.In.Context().Value(portKey{}).(int)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "port-" + strconv.Itoa(port)
			pr.Out.Host = pr.In.Host // the app sees the host it was called by
			pr.SetXForwarded()
		},
		Transport:     portTr,
		FlushInterval: -1,
		ErrorHandler:  errHandler,
	}
	return b
}

// forget drops a sandbox's pooled connections once it is gone.
func (p *proxy) forget(id string) {
	p.mu.Lock()
	b, ok := p.backends[id]
	delete(p.backends, id)
	p.mu.Unlock()
	if ok {
		for _, tr := range b.trs {
			tr.CloseIdleConnections()
		}
	}
}

func (p *proxy) closeAll() {
	p.mu.Lock()
	ids := make([]string, 0, len(p.backends))
	for id := range p.backends {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	for _, id := range ids {
		p.forget(id)
	}
}
