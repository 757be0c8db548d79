package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"

	"github.com/sbxdev/sbx/internal/api"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp"
	"github.com/sbxdev/sbx/internal/prom"
	"github.com/sbxdev/sbx/internal/proxy"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// newProxy returns the data-plane proxy to mgr's sandboxes and installs the
// Manager's hooks into it: a sandbox killed or paused loses its pooled
// connections (so the next request resolves it again, and wakes it), and
// idle pauses read the proxy's record of requests.
func newProxy(domain string, mgr *sandbox.Manager, met *prom.Metrics, log *slog.Logger) *proxy.Proxy {
	p := proxy.New(proxy.Config{Domain: domain}, proxySandboxes{mgr}, log)
	mgr.SetHooks(metricHooks(sandbox.Hooks{Gone: p.Forget, Pausing: p.Forget, Activity: p.Activity}, met))
	return p
}

// proxySandboxes adapts the Manager to what the proxy needs of it.
type proxySandboxes struct{ m *sandbox.Manager }

func (a proxySandboxes) EnsureRunning(ctx context.Context, id string) (proxy.Sandbox, error) {
	sb, err := a.m.DataPlane().EnsureRunning(ctx, id)
	if err != nil {
		return proxy.Sandbox{}, err
	}
	return proxy.Sandbox{ID: sb.ID, EnvdToken: sb.EnvdToken, TrafficToken: sb.TrafficToken,
		MaskRequestHost: sb.Life.MaskRequestHost, HTTPSPorts: sb.Life.HTTPSPorts}, nil
}

func (a proxySandboxes) DialAgent(ctx context.Context, id string) (net.Conn, error) {
	return a.m.DataPlane().DialAgent(ctx, id)
}

func (a proxySandboxes) PortDialer(ctx context.Context, id string) (proxy.PortDialer, error) {
	sb, err := a.m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	pd, err := a.m.DataPlane().PortDialer(ctx, sb)
	if pd == nil {
		// A nil *sandbox.PortDialer in the interface would not be nil.
		return nil, err
	}
	return pd, err
}

func (a proxySandboxes) Killed(ctx context.Context, id string) bool {
	_, err := a.m.Get(ctx, id) // a killed sandbox is not found
	return errors.Is(err, errdefs.ErrNotFound)
}

// handler is sbx serve's HTTP handler: requests addressed to a sandbox go to
// the data plane (the proxy), everything else to the control plane (the
// API, which checks origins and keys). Both answer 503 until the server is
// ready.
type handler struct {
	proxy *proxy.Proxy
	api   *api.Server
	log   *slog.Logger
	// met, when not nil, counts data-plane requests.
	met *prom.Metrics
}

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if t, ok := h.proxy.Route(r); ok {
		if !h.api.Ready() {
			errhttp.Write(w, r, h.log, errdefs.New(errdefs.ErrUnavailable, "sbx is starting"))
			return
		}
		// Revoking a key that was given the sandbox's token ends this.
		r, done := h.api.TrackDataPlane(r, t.SandboxID)
		defer done()
		if h.met != nil {
			observeDataPlane(h.met, w, r, t, func(w http.ResponseWriter, r *http.Request) { h.proxy.Serve(w, r, t) })
			return
		}
		h.proxy.Serve(w, r, t)
		return
	}
	h.api.ServeHTTP(w, r)
}
