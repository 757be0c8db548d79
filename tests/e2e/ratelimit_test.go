package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// rateCall is one answer of a burst of concurrent calls.
type rateCall struct {
	status     int
	retryAfter string
	body       wire.Error
}

// burst sends n copies of a request at once and returns their answers.
func burst(t *testing.T, ctx context.Context, n int, method, url, key, body string) []rateCall {
	t.Helper()
	out := make([]rateCall, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("X-API-Key", key)
			req.Header.Set("Content-Type", "application/json")
			<-start
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			out[i] = rateCall{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
			if resp.StatusCode == http.StatusTooManyRequests {
				if err := json.Unmarshal(b, &out[i].body); err != nil {
					t.Errorf("429 body %q: %v", b, err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// checkBurst asserts that exactly ok of calls got okStatus and the rest
// 429 in the E2B error shape with a Retry-After of the seconds until the
// next token (the limits are 1 token per 1000 s).
func checkBurst(t *testing.T, what string, calls []rateCall, okStatus, ok int) {
	t.Helper()
	var got, limited int
	for _, c := range calls {
		switch c.status {
		case okStatus:
			got++
		case http.StatusTooManyRequests:
			limited++
			secs, err := strconv.Atoi(c.retryAfter)
			if err != nil || secs < 900 || secs > 1000 {
				t.Errorf("%s: 429 with Retry-After %q, want the seconds to the next token (about 1000)", what, c.retryAfter)
			}
			if c.body.Code != http.StatusTooManyRequests || !strings.Contains(c.body.Message, "rate limit") {
				t.Errorf("%s: 429 body %+v, want the E2B error shape", what, c.body)
			}
		default:
			t.Errorf("%s: status %d, want %d or 429", what, c.status, okStatus)
		}
	}
	if got != ok || limited != len(calls)-ok {
		t.Fatalf("%s: %d of %d calls got %d and %d got 429, want exactly %d and %d", what, got, len(calls), okStatus, limited, ok, len(calls)-ok)
	}
}

// TestRateLimit starts sbx with tiny per-key limits (8 API calls and 2
// creates, refilled at one per 1000 s) and sends concurrent calls: exactly
// the burst passes, the rest get 429 with Retry-After; the e2b npm SDK
// maps the 429 to RateLimitError.
func TestRateLimit(t *testing.T) {
	srv := harness.Start(t, "--internet=false",
		"--rate-limit-rps", "0.001", "--rate-limit-burst", "8",
		"--create-rate-limit", "0.001", "--create-rate-limit-burst", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A wrong key is refused before any bucket is touched.
	if st, _ := getJSON(t, ctx, srv.URL+"/v2/sandboxes", harness.NewAPIKey()); st != http.StatusUnauthorized {
		t.Fatalf("wrong key: status %d, want 401", st)
	}
	// Six creates at once take six of the eight API calls; two pass the
	// create limit (and are then refused for their unknown template).
	checkBurst(t, "creates", burst(t, ctx, 6, http.MethodPost, srv.URL+"/v2/sandboxes", srv.APIKey,
		`{"templateID":"no-such-template"}`), http.StatusNotFound, 2)
	// Two API calls are left.
	checkBurst(t, "lists", burst(t, ctx, 6, http.MethodGet, srv.URL+"/v2/sandboxes", srv.APIKey, ""), http.StatusOK, 2)
	// Unauthenticated routes are not limited.
	if st, _ := getJSON(t, ctx, srv.URL+"/health", ""); st != http.StatusOK {
		t.Fatalf("health: status %d, want 200", st)
	}

	dir := filepath.Join(harness.RepoRoot(), "tests", "e2b-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		t.Fatal("the e2b npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/setup.sh")
	}
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "--test-force-exit", "ratelimit.spec.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey)
	out, err := cmd.CombinedOutput()
	t.Logf("node output:\n%s", out)
	if err != nil {
		t.Fatalf("ratelimit.spec.js failed: %v", err)
	}
}
