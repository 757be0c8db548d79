package e2e

import (
	"context"
	"net/http"
	"regexp"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

var metricsAddrLog = regexp.MustCompile(`msg="serving Prometheus metrics" addr=(\S+)`)

// metricsAddr is where srv serves /metrics, from its log.
func metricsAddr(t *testing.T, srv *harness.Server) string {
	t.Helper()
	m := metricsAddrLog.FindAllStringSubmatch(srv.Logs(), -1)
	if len(m) == 0 {
		t.Fatal("sbx serve did not log its metrics address")
	}
	return m[len(m)-1][1]
}

// scrape fetches url and parses it with Prometheus' text parser.
func scrape(t *testing.T, ctx context.Context, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample returns the metric of family name whose labels include want;
// false when there is none.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (*dto.Metric, bool) {
	f, ok := fams[name]
	if !ok {
		return nil, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m, true
	}
	return nil, false
}

func gaugeOf(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m, ok := sample(fams, name, labels)
	if !ok {
		t.Fatalf("no %s%v in the scrape", name, labels)
	}
	return m.GetGauge().GetValue()
}

// TestPrometheusMetrics scrapes --metrics-listen with Prometheus' own
// parser: the running sandboxes are counted by state and runtime, creates
// and first commands are timed, data-plane requests counted, the warm pool
// and the store reported; a kill shows in the next scrape.
func TestPrometheusMetrics(t *testing.T) {
	srv := harness.Start(t, "--metrics-listen", "127.0.0.1:0", "--warm-pool", "1")
	ctx := ctxFor(t, 3*time.Minute)
	url := "http://" + metricsAddr(t, srv) + "/metrics"
	rt := harness.Runtime()
	// The pool's sandbox is ready before the first create, which takes it.
	for deadline := time.Now().Add(time.Minute); gaugeOf(t, scrape(t, ctx, url), "sbx_warm_pool_ready", nil) != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the warm pool did not fill within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var sbs []*client.Sandbox
	for range 2 {
		sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sbs = append(sbs, sb)
	}
	if res := mustRun(t, ctx, sbs[0], "echo hi", nil); res.Stdout != "hi\n" {
		t.Fatalf("run: %+v", res)
	}

	fams := scrape(t, ctx, url)
	running := map[string]string{"state": "running", "runtime": rt, "team": "default"}
	if n := gaugeOf(t, fams, "sbx_sandboxes", running); n != 2 {
		t.Fatalf("sbx_sandboxes%v = %v, want 2", running, n)
	}
	create, ok := sample(fams, "sbx_sandbox_operation_duration_seconds", map[string]string{"op": "create", "runtime": rt})
	if !ok || create.GetHistogram().GetSampleCount() < 2 {
		t.Fatalf("create histogram: %v", create)
	}
	if first, ok := sample(fams, "sbx_sandbox_first_command_seconds", map[string]string{"runtime": rt}); !ok || first.GetHistogram().GetSampleCount() != 1 {
		t.Fatalf("first command histogram: %v", first)
	}
	if m, ok := sample(fams, "sbx_proxy_requests_total", map[string]string{"code": "200", "target": "agent"}); !ok || m.GetCounter().GetValue() < 1 {
		t.Fatalf("proxy requests: %v", m)
	}
	if m, ok := sample(fams, "sbx_proxy_bytes_total", map[string]string{"direction": "out"}); !ok || m.GetCounter().GetValue() <= 0 {
		t.Fatalf("proxy bytes out: %v", m)
	}
	if m, ok := sample(fams, "sbx_agent_round_trip_seconds", nil); !ok || m.GetHistogram().GetSampleCount() < 1 {
		t.Fatalf("agent round trips: %v", m)
	}
	if m, ok := sample(fams, "sbx_warm_pool_takes_total", map[string]string{"result": "hit"}); !ok || m.GetCounter().GetValue() < 1 {
		t.Fatalf("warm pool hits: %v", m)
	}
	if m, ok := sample(fams, "sbx_store_operation_duration_seconds", map[string]string{"op": "exec"}); !ok || m.GetHistogram().GetSampleCount() == 0 {
		t.Fatalf("store latency: %v", m)
	}
	if _, ok := sample(fams, "sbx_store_errors_total", map[string]string{"op": "exec"}); !ok {
		t.Fatal("no sbx_store_errors_total")
	}
	for _, r := range []string{"cpu", "memory", "disk"} {
		if c := gaugeOf(t, fams, "sbx_host_capacity", map[string]string{"resource": r}); c <= 0 {
			t.Fatalf("capacity of %s: %v", r, c)
		}
	}
	// Two running sandboxes of the defaults (1 core, 512 MiB), and the
	// pooled one being made again or ready.
	if mem := gaugeOf(t, fams, "sbx_host_reserved", map[string]string{"resource": "memory"}); mem < 2*512<<20 {
		t.Fatalf("memory reserved %v, want at least two sandboxes' 512 MiB", mem)
	}

	if err := sbs[1].Kill(ctx); err != nil {
		t.Fatal(err)
	}
	fams = scrape(t, ctx, url)
	if n := gaugeOf(t, fams, "sbx_sandboxes", running); n != 1 {
		t.Fatalf("after a kill, sbx_sandboxes%v = %v, want 1", running, n)
	}
}
