// Package prom exposes sbx serve's Prometheus metrics (sbx serve
// --metrics-listen): sandboxes by state, runtime and team; latencies of
// create, first command, pause, resume and fork; the data plane's requests
// and bytes and the agent's round trips; the warm pool; host resources
// reserved against capacity; the store's latency and errors.
//
// # Overview
//
// [New] returns a [Metrics] with a registry of its own (the client
// library's global registry is never used). The parts of sbx tell it what
// happens through its methods, which internal/server installs as their
// hooks (the API's Observer, the Manager's Hooks, the data plane's
// wrapper, the store's observer); gauges of stored state are read from the
// store at each scrape. [Metrics.Handler] serves the text format.
package prom

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/store"
)

// latencyBuckets run from 100µs to 60s, about three per decade: data-plane
// round trips take under a millisecond, a memory restore seconds, a cold
// create with a ready check tens of seconds.
var latencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60,
}

// maxFirstCommand bounds the sandboxes whose first command is awaited.
const maxFirstCommand = 10000

// Store is what the scrape reads of the database. It is called from the
// scraping goroutine.
type Store interface {
	ListSandboxes(ctx context.Context, states ...store.State) ([]*store.Sandbox, error)
}

// Config configures Metrics.
type Config struct {
	// Team labels every sandbox (sbx has one team).
	Team string
	// DataDir is the filesystem whose size is the disk capacity.
	DataDir string
}

// Metrics holds sbx serve's metrics. Its methods are safe for concurrent
// use.
type Metrics struct {
	cfg Config
	db  Store
	log *slog.Logger
	reg *prometheus.Registry

	lifecycle      *prometheus.HistogramVec
	firstCommand   *prometheus.HistogramVec
	proxyRequests  *prometheus.CounterVec
	proxyBytes     *prometheus.CounterVec
	agentRoundTrip prometheus.Histogram
	warmReady      prometheus.Gauge
	warmTakes      *prometheus.CounterVec
	storeLatency   *prometheus.HistogramVec
	storeErrors    *prometheus.CounterVec

	mu sync.Mutex
	// created holds when each sandbox's create began, until its first
	// command starts.
	created map[string]created
}

type created struct {
	at      time.Time
	runtime string
}

// New returns the metrics, registered on a registry of their own.
func New(cfg Config, db Store, log *slog.Logger) *Metrics {
	m := &Metrics{cfg: cfg, db: db, log: log, reg: prometheus.NewRegistry(), created: map[string]created{}}
	m.lifecycle = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sbx_sandbox_operation_duration_seconds", Help: "Time the API took to create, pause, resume or fork a sandbox, as the caller waited for it.",
		Buckets: latencyBuckets,
	}, []string{"op", "runtime"})
	m.firstCommand = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sbx_sandbox_first_command_seconds", Help: "Time from the start of a sandbox's create request to its first command's start answering.",
		Buckets: latencyBuckets,
	}, []string{"runtime"})
	m.proxyRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sbx_proxy_requests_total", Help: "Data-plane requests, by status code and by target (agent: the agent's port; port: a sandbox port).",
	}, []string{"code", "target"})
	m.proxyBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sbx_proxy_bytes_total", Help: "Body bytes through the data plane: in from clients, out to them.",
	}, []string{"direction"})
	m.agentRoundTrip = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sbx_agent_round_trip_seconds", Help: "Time from a data-plane request to the agent until its response headers.",
		Buckets: latencyBuckets,
	})
	m.warmReady = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sbx_warm_pool_ready", Help: "Sandboxes in the warm pool, started and waiting for a create.",
	})
	m.warmTakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sbx_warm_pool_takes_total", Help: "Creates that asked the warm pool for a sandbox: hit (got one) or miss.",
	}, []string{"result"})
	m.storeLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sbx_store_operation_duration_seconds", Help: "Time of database statements, by kind (exec, query, begin).",
		Buckets: latencyBuckets,
	}, []string{"op"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sbx_store_errors_total", Help: "Database statements that failed, by kind.",
	}, []string{"op"})
	for _, r := range []string{"hit", "miss"} {
		m.warmTakes.WithLabelValues(r)
	}
	for _, op := range []string{"exec", "query", "begin"} {
		m.storeErrors.WithLabelValues(op)
	}
	m.reg.MustRegister(m.lifecycle, m.firstCommand, m.proxyRequests, m.proxyBytes, m.agentRoundTrip,
		m.warmReady, m.warmTakes, m.storeLatency, m.storeErrors, stateCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus' formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn), Registry: m.reg,
	})
}

// Operation records that op ("create", "pause", "resume", "fork") of a
// sandbox on runtime took d.
func (m *Metrics) Operation(op, runtime string, d time.Duration) {
	m.lifecycle.WithLabelValues(op, runtime).Observe(d.Seconds())
}

// Created records that sandbox id's create began at start; its first
// command is timed from then.
func (m *Metrics) Created(id, runtime string, start time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.created) < maxFirstCommand {
		m.created[id] = created{at: start, runtime: runtime}
	}
}

// Gone forgets sandbox id.
func (m *Metrics) Gone(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.created, id)
}

// ProxyRequest records a data-plane request to sandbox id: to its agent
// or to one of its ports, its path, status, body bytes in and out, and
// the time until its response headers.
func (m *Metrics) ProxyRequest(id string, agent bool, path string, code int, in, out int64, headers time.Duration) {
	target := "port"
	if agent {
		target = "agent"
		m.agentRoundTrip.Observe(headers.Seconds())
	}
	m.proxyRequests.WithLabelValues(strconv.Itoa(code), target).Inc()
	m.proxyBytes.WithLabelValues("in").Add(float64(in))
	m.proxyBytes.WithLabelValues("out").Add(float64(out))
	if agent && path == "/process.Process/Start" && code == http.StatusOK {
		m.mu.Lock()
		c, ok := m.created[id]
		delete(m.created, id)
		m.mu.Unlock()
		if ok {
			m.firstCommand.WithLabelValues(c.runtime).Observe(time.Since(c.at).Seconds())
		}
	}
}

// WarmReady records the warm pool's size.
func (m *Metrics) WarmReady(n int) { m.warmReady.Set(float64(n)) }

// WarmTake records a create asking the warm pool for a sandbox.
func (m *Metrics) WarmTake(hit bool) {
	if hit {
		m.warmTakes.WithLabelValues("hit").Inc()
	} else {
		m.warmTakes.WithLabelValues("miss").Inc()
	}
}

// Store records a database statement of kind op that took d.
func (m *Metrics) Store(op string, d time.Duration, err error) {
	m.storeLatency.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}

var (
	sandboxesDesc = prometheus.NewDesc("sbx_sandboxes", "Sandboxes by stored state, runtime and team.", []string{"state", "runtime", "team"}, nil)
	reservedDesc  = prometheus.NewDesc("sbx_host_reserved", "Host resources the sandboxes' limits reserve: cpu in cores, memory and disk in bytes.", []string{"resource"}, nil)
	capacityDesc  = prometheus.NewDesc("sbx_host_capacity", "Host resources: cpu in cores, memory and disk (the data directory's filesystem) in bytes.", []string{"resource"}, nil)
	scrapeErrDesc = prometheus.NewDesc("sbx_scrape_store_error", "1 when the scrape could not read the sandboxes from the store.", nil, nil)
)

// states are every stored state, so that each appears (at 0) in a scrape.
var states = []string{"creating", "running", "pausing", "paused", "resuming", "killed", "failed"}

// stateCollector reads the sandboxes from the store at each scrape.
type stateCollector struct{ m *Metrics }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sandboxesDesc
	ch <- reservedDesc
	ch <- capacityDesc
	ch <- scrapeErrDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sbs, err := c.m.db.ListSandboxes(ctx)
	failed := 0.0
	if err != nil {
		c.m.log.Warn("metrics: list sandboxes", "err", err)
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, failed)
	type key struct{ state, runtime string }
	counts := map[key]int{}
	runtimes := map[string]bool{}
	var cpus float64
	var mem, disk int64
	for _, sb := range sbs {
		counts[key{string(sb.State), sb.Runtime}]++
		runtimes[sb.Runtime] = true
		switch sb.State {
		case "killed", "failed":
			continue // their box and disk are released, or being released
		case "paused":
			// A frozen box keeps its memory; a checkpointed or stopped
			// one only its disk.
			if sb.Life.PauseKind == "frozen" {
				mem += sb.MemoryMB << 20
			}
		default:
			cpus += sb.CPUs
			mem += sb.MemoryMB << 20
		}
		disk += sb.DiskMB << 20
	}
	for rt := range runtimes {
		for _, st := range states {
			ch <- prometheus.MustNewConstMetric(sandboxesDesc, prometheus.GaugeValue, float64(counts[key{st, rt}]), st, rt, c.m.cfg.Team)
		}
	}
	ch <- prometheus.MustNewConstMetric(reservedDesc, prometheus.GaugeValue, cpus, "cpu")
	ch <- prometheus.MustNewConstMetric(reservedDesc, prometheus.GaugeValue, float64(mem), "memory")
	ch <- prometheus.MustNewConstMetric(reservedDesc, prometheus.GaugeValue, float64(disk), "disk")
	ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(runtime.NumCPU()), "cpu")
	if n, err := memTotal(); err == nil {
		ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(n), "memory")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(c.m.cfg.DataDir, &st); err == nil {
		ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(st.Blocks*uint64(st.Bsize)), "disk")
	}
}

// memTotal reads the host's memory from /proc/meminfo.
func memTotal() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("meminfo: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("meminfo: no MemTotal")
}
