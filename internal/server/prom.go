package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sbxdev/sbx/internal/api"
	"github.com/sbxdev/sbx/internal/prom"
	"github.com/sbxdev/sbx/internal/proxy"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
)

// startPrometheus serves the Prometheus metrics on cfg.MetricsListen (off
// when empty: nil metrics) and has the store report to them. It returns
// the function that stops the listener.
func startPrometheus(cfg Config, db *store.DB, log *slog.Logger) (*prom.Metrics, func(), error) {
	if cfg.MetricsListen == "" {
		return nil, func() {}, nil
	}
	met := prom.New(prom.Config{Team: api.DefaultTeam, DataDir: cfg.DataDir}, db, log)
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listen: %w", err)
	}
	db.SetObserver(met.Store)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", met.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener", "err", err)
		}
	}()
	log.Info("serving Prometheus metrics", "addr", ln.Addr().String())
	return met, func() {
		db.SetObserver(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
	}, nil
}

// metricHooks adds the metrics' hooks to h: the warm pool's size and
// takes, and sandboxes that go.
func metricHooks(h sandbox.Hooks, met *prom.Metrics) sandbox.Hooks {
	if met == nil {
		return h
	}
	gone := h.Gone
	h.Gone = func(id string) {
		gone(id)
		met.Gone(id)
	}
	h.WarmReady, h.WarmTake = met.WarmReady, met.WarmTake
	return h
}

// apiObserver is the metrics as the API's Observer; nil when off.
func apiObserver(met *prom.Metrics) api.Observer {
	if met == nil {
		return nil
	}
	return met
}

// observeDataPlane serves a data-plane request through serve, telling met
// its status, body bytes and the time to its response headers.
func observeDataPlane(met *prom.Metrics, w http.ResponseWriter, r *http.Request, t proxy.Target, serve func(http.ResponseWriter, *http.Request)) {
	start := time.Now()
	cw := &countingWriter{ResponseWriter: w, start: start}
	var in *countingBody
	if body := r.Body; body != nil && body != http.NoBody {
		in = &countingBody{ReadCloser: body}
		r.Body = in
		// The server reads r.Body after the handler to decide whether the
		// connection can serve another request (not if the body was
		// closed unread): it must find its own body there again.
		defer func() { r.Body = body }()
	}
	serve(cw, r)
	var n int64
	if in != nil {
		n = in.n.Load()
	}
	code, took := cw.code, cw.took
	if code == 0 {
		code, took = http.StatusOK, time.Since(start)
	}
	met.ProxyRequest(t.SandboxID, t.Port == proxy.EnvdPort, r.URL.Path, code, n, cw.n, took)
}

// countingWriter records a response's status, the time to its headers and
// its body bytes. Unwrap lets http.ResponseController reach the
// connection (flushes, hijacks, full duplex); ReadFrom keeps the
// connection's splice path for large bodies.
type countingWriter struct {
	http.ResponseWriter
	start time.Time
	code  int
	took  time.Duration
	n     int64
}

func (w *countingWriter) head(code int) {
	if w.code == 0 && code >= 200 {
		w.code, w.took = code, time.Since(w.start)
	}
}

func (w *countingWriter) WriteHeader(code int) {
	w.head(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.head(http.StatusOK)
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	w.head(http.StatusOK)
	n, err := io.Copy(w.ResponseWriter, r)
	w.n += n
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts a request body's bytes; the proxy may read it from
// another goroutine than the handler's.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
