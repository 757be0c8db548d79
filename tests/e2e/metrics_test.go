package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/pgtest"
	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// awaitMetric polls sandbox id's samples until ok holds for them, failing
// after within.
func awaitMetric(t *testing.T, ctx context.Context, c *client.Client, id, what string, within time.Duration, ok func([]client.SandboxMetric) bool) []client.SandboxMetric {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ms, err := c.SandboxMetrics(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ok(ms) {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s not seen in %d samples: %+v", within, what, len(ms), ms)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// getJSON sends a GET with key to srv and returns the status and body.
func getJSON(t *testing.T, ctx context.Context, url, key string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func last(ms []client.SandboxMetric) client.SandboxMetric { return ms[len(ms)-1] }

// TestMetricsSandbox checks getMetrics' samples against what a sandbox
// does: a busy loop shows as CPU, a file in /dev/shm as memory, a file on
// its disk as disk; totals are its limits. The samples stay through a
// pause and a restart of the server and go with the kill.
func TestMetricsSandbox(t *testing.T) {
	srv := harness.Start(t, "--metrics-interval", "1s")
	ctx := ctxFor(t, 4*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := last(awaitMetric(t, ctx, c, sb.ID, "a first sample", 30*time.Second, func(ms []client.SandboxMetric) bool { return len(ms) > 0 }))
	if base.CPUCount != 1 || base.MemTotal != 512<<20 || base.DiskTotal != 10240<<20 {
		t.Fatalf("totals %+v, want 1 CPU, 512 MiB memory, 10240 MiB disk (the server's defaults)", base)
	}
	if base.MemUsed <= 0 || base.TimestampUnix != base.Timestamp.Unix() {
		t.Fatalf("first sample %+v", base)
	}

	mustRun(t, ctx, sb, "timeout 3 sh -c 'while :; do :; done'; true", nil)
	awaitMetric(t, ctx, c, sb.ID, "CPU use of a busy loop", 20*time.Second, func(ms []client.SandboxMetric) bool {
		for _, m := range ms {
			if m.CPUUsedPct > 10 && m.CPUUsedPct <= 100 {
				return true
			}
		}
		return false
	})
	if err := mustRun(t, ctx, sb, "head -c 48M /dev/zero > /dev/shm/fill", nil).Err(); err != nil {
		t.Fatal(err)
	}
	awaitMetric(t, ctx, c, sb.ID, "memUsed grown by 40 MiB", 20*time.Second, func(ms []client.SandboxMetric) bool {
		return last(ms).MemUsed >= base.MemUsed+40<<20
	})
	if err := mustRun(t, ctx, sb, "head -c 32M /dev/urandom > /tmp/blob && sync", nil).Err(); err != nil {
		t.Fatal(err)
	}
	awaitMetric(t, ctx, c, sb.ID, "diskUsed grown by 30 MiB", 20*time.Second, func(ms []client.SandboxMetric) bool {
		return last(ms).DiskUsed >= base.DiskUsed+30<<20
	})

	// Many at once, unknown ids left out.
	code, body := getJSON(t, ctx, srv.URL+"/sandboxes/metrics?sandbox_ids="+sb.ID+",nosuchsandbox00000000", srv.APIKey)
	var many wire.SandboxesWithMetrics
	if err := json.Unmarshal(body, &many); code != 200 || err != nil || len(many.Sandboxes) != 1 || many.Sandboxes[sb.ID].MemTotal != 512<<20 {
		t.Fatalf("GET /sandboxes/metrics: %d %s", code, body)
	}
	// The team: one sandbox running.
	code, body = getJSON(t, ctx, srv.URL+"/teams/default/metrics/max?metric=concurrent_sandboxes", srv.APIKey)
	var mx wire.MaxTeamMetric
	if err := json.Unmarshal(body, &mx); code != 200 || err != nil || mx.Value != 1 {
		t.Fatalf("max concurrent sandboxes: %d %s", code, body)
	}
	code, body = getJSON(t, ctx, srv.URL+"/teams", srv.APIKey)
	var teams []wire.Team
	if err := json.Unmarshal(body, &teams); code != 200 || err != nil || len(teams) != 1 || teams[0].TeamID != "default" || !teams[0].IsDefault {
		t.Fatalf("GET /teams: %d %s", code, body)
	}

	// Paused: the samples stay, and a range selects among them.
	if err := c.Pause(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	before, err := c.SandboxMetrics(ctx, sb.ID, nil)
	if err != nil || len(before) < 3 {
		t.Fatalf("metrics of a paused sandbox: %d samples, %v", len(before), err)
	}
	mid := before[len(before)/2].Timestamp
	ranged, err := c.SandboxMetrics(ctx, sb.ID, &client.MetricsOptions{Start: mid, End: mid})
	if err != nil || len(ranged) == 0 || len(ranged) >= len(before) {
		t.Fatalf("one second's samples: %d of %d, %v", len(ranged), len(before), err)
	}
	for _, m := range ranged {
		if m.TimestampUnix != mid.Unix() {
			t.Fatalf("sample at %d outside [%d, %d]", m.TimestampUnix, mid.Unix(), mid.Unix())
		}
	}

	// A restart keeps them.
	srv.Restart()
	c = srv.Client
	after, err := c.SandboxMetrics(ctx, sb.ID, nil)
	if err != nil || len(after) < len(before) {
		t.Fatalf("after a restart: %d samples (had %d), %v", len(after), len(before), err)
	}

	// Killed: the record and its samples go.
	if err := c.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SandboxMetrics(ctx, sb.ID, nil); !client.IsNotFound(err) {
		t.Fatalf("metrics of a killed sandbox: %v, want not found", err)
	}
}

// TestMetricsBadInput checks the metrics routes' answers to wrong input:
// E2B's error shape with a 4xx.
func TestMetricsBadInput(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 2*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := "/sandboxes/" + sb.ID + "/metrics"
	many := strings.TrimSuffix(strings.Repeat("a,", 101), ",")
	cases := []struct {
		name, path, key string
		status          int
		msg             string
	}{
		{"reversed range", p + "?start=2000&end=1000", srv.APIKey, 400, "start must not be after end"},
		{"start not a number", p + "?start=yesterday", srv.APIKey, 400, "start"},
		{"negative end", p + "?end=-1", srv.APIKey, 400, "end"},
		{"huge start", p + "?start=99999999999999999999", srv.APIKey, 400, "start"},
		{"unknown sandbox", "/sandboxes/nosuchsandbox00000000/metrics", srv.APIKey, 404, "not found"},
		{"traversal", "/sandboxes/..%2f..%2fetc/metrics", srv.APIKey, 404, "not found"},
		{"wrong key", p, "e2b_" + strings.Repeat("0", 40), 401, "invalid API key"},
		{"no key", p, "", 401, "API key"},
		{"no sandbox_ids", "/sandboxes/metrics", srv.APIKey, 400, "sandbox_ids"},
		{"too many sandbox_ids", "/sandboxes/metrics?sandbox_ids=" + many, srv.APIKey, 400, "at most 100"},
		{"empty sandbox id", "/sandboxes/metrics?sandbox_ids=" + sb.ID + ",", srv.APIKey, 400, "empty"},
		{"other team", "/teams/someone-else/metrics", srv.APIKey, 403, "team"},
		{"team range reversed", "/teams/default/metrics?start=5&end=4", srv.APIKey, 400, "start must not be after end"},
		{"max without metric", "/teams/default/metrics/max", srv.APIKey, 400, "metric is required"},
		{"max of unknown metric", "/teams/default/metrics/max?metric=cpu", srv.APIKey, 400, "metric must be"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := getJSON(t, ctx, srv.URL+tc.path, tc.key)
			var eb wire.Error
			if err := json.Unmarshal(body, &eb); code != tc.status || err != nil || eb.Code != tc.status || !strings.Contains(eb.Message, tc.msg) {
				t.Fatalf("%d %s, want %d with %q", code, body, tc.status, tc.msg)
			}
		})
	}
}

// TestMetricsE2BJS runs tests/e2b-js/metrics.test.js alone against a
// server sampling every second (the whole e2b-js suite runs it too, at the
// default interval, in TestE2BJavaScriptSDK).
func TestMetricsE2BJS(t *testing.T) {
	dir := filepath.Join(harness.RepoRoot(), "tests", "e2b-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		t.Fatal("the e2b npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/setup.sh")
	}
	srv := harness.Start(t, "--metrics-interval", "1s")
	cmd := exec.Command("node", "--test", "--test-reporter=spec", "--test-force-exit", "metrics.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test metrics.test.js:\n%s", out)
	if err != nil {
		t.Fatalf("e2b-js metrics suite failed: %v", err)
	}
}

// TestMetricsPostgres samples a sandbox on a Postgres store and scrapes
// the Prometheus metrics, whose store latencies then are Postgres's.
func TestMetricsPostgres(t *testing.T) {
	srv := harness.Start(t, "--store", pgtest.Postgres(t), "--node", "n1", "--metrics-interval", "1s", "--metrics-listen", "127.0.0.1:0")
	ctx := ctxFor(t, 2*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ms := awaitMetric(t, ctx, srv.Client, sb.ID, "two samples", 30*time.Second, func(ms []client.SandboxMetric) bool { return len(ms) >= 2 })
	if m := last(ms); m.MemTotal != 512<<20 || m.MemUsed <= 0 {
		t.Fatalf("sample %+v", m)
	}
	code, body := getJSON(t, ctx, srv.URL+"/teams/default/metrics/max?metric=concurrent_sandboxes", srv.APIKey)
	var mx wire.MaxTeamMetric
	if err := json.Unmarshal(body, &mx); code != 200 || err != nil || mx.Value != 1 {
		t.Fatalf("max concurrent sandboxes: %d %s", code, body)
	}
	fams := scrape(t, ctx, "http://"+metricsAddr(t, srv)+"/metrics")
	if n := gaugeOf(t, fams, "sbx_sandboxes", map[string]string{"state": "running", "runtime": harness.Runtime()}); n != 1 {
		t.Fatalf("running sandboxes %v, want 1", n)
	}
	if m, ok := sample(fams, "sbx_store_operation_duration_seconds", map[string]string{"op": "query"}); !ok || m.GetHistogram().GetSampleCount() == 0 {
		t.Fatalf("store latency: %v", m)
	}
}
