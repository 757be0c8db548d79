package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// recorder is a reverse proxy to a real server that records each request
// the SDK sends: the tests that check what goes on the wire read it.
type recorder struct {
	URL  string
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   string
}

func newRecorder(t *testing.T, target string) *recorder {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b []byte
		if r.Body != nil {
			b, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b)})
		rec.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

// requests returns what was sent so far.
func (r *recorder) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// last returns the last request to path.
func (r *recorder) last(path string) (recorded, bool) {
	reqs := r.requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Path == path {
			return reqs[i], true
		}
	}
	return recorded{}, false
}

// newServer starts a real sbx serve and returns a client that reaches it
// through a recorder.
func newServer(t *testing.T) (*harness.Server, *recorder, *client.Client) {
	t.Helper()
	srv := harness.Start(t)
	rec := newRecorder(t, srv.URL)
	return srv, rec, client.New(rec.URL, srv.APIKey)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestCreateTimeoutEncoding(t *testing.T) {
	_, rec, c := newServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	tests := []struct {
		name    string
		timeout time.Duration
		want    any // the "timeout" field of the body; nil when absent
	}{
		{"server default", 0, nil},
		{"no limit", client.NoTimeout, float64(0)},
		{"whole seconds", 90 * time.Second, float64(90)},
		{"rounded up", 1500 * time.Millisecond, float64(2)},
		{"sub-second", time.Millisecond, float64(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: tt.timeout, Metadata: map[string]string{"a": "b"}, Env: map[string]string{"K": "V"}})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := rec.last("/v2/sandboxes")
			var body map[string]any
			if err := json.Unmarshal([]byte(req.Body), &body); err != nil {
				t.Fatal(err)
			}
			got, ok := body["timeout"]
			if tt.want == nil && ok {
				t.Errorf("timeout sent as %v, want absent", got)
			}
			if tt.want != nil && got != tt.want {
				t.Errorf("timeout = %v, want %v", got, tt.want)
			}
			if body["templateID"] != "base" {
				t.Errorf("templateID = %v, want base", body["templateID"])
			}
			if md, _ := body["metadata"].(map[string]any); md["a"] != "b" {
				t.Errorf("metadata = %v", body["metadata"])
			}
			if env, _ := body["envVars"].(map[string]any); env["K"] != "V" {
				t.Errorf("envVars = %v", body["envVars"])
			}
			if sb.ID == "" || sb.EnvdAccessToken == "" || sb.TemplateID != "base" {
				t.Errorf("sandbox = %+v", sb)
			}
			if tt.timeout > 0 && tt.timeout < 5*time.Second {
				return // it may have timed out already
			}
			info, err := c.GetSandbox(ctx, sb.ID)
			if err != nil {
				t.Fatal(err)
			}
			if (tt.timeout == client.NoTimeout) == info.HasTimeout() {
				t.Errorf("HasTimeout = %v for timeout %v (endAt %v)", info.HasTimeout(), tt.timeout, info.EndAt)
			}
			if err := sb.Kill(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestListPagesAndFilters(t *testing.T) {
	_, rec, c := newServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	for i := range 5 {
		md := map[string]string{"team": "a"}
		if i%2 == 1 {
			md["team"] = "b"
		}
		if _, err := c.CreateSandbox(ctx, client.CreateOptions{Metadata: md}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := c.ListSandboxes(ctx, &client.ListOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("listed %d sandboxes over pages of 2, want 5", len(all))
	}
	n := 0
	for _, r := range rec.requests() {
		if r.Method == "GET" && r.Path == "/v2/sandboxes" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d list requests, want 3", n)
	}
	as, err := c.ListSandboxes(ctx, &client.ListOptions{Metadata: map[string]string{"team": "a"}, States: []string{client.StateRunning, client.StatePaused}})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 3 {
		t.Errorf("team=a: %d sandboxes, want 3", len(as))
	}
	req, _ := rec.last("/v2/sandboxes")
	q, _ := url.ParseQuery(req.RawQuery)
	if q.Get("metadata") != "team=a" || len(q["state"]) != 2 {
		t.Errorf("query = %q", req.RawQuery)
	}
	empty, err := c.ListSandboxes(ctx, &client.ListOptions{Metadata: map[string]string{"team": "z"}})
	if err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("no match: %v, %v; want empty non-nil slice", empty, err)
	}
}

func TestErrors(t *testing.T) {
	srv, _, c := newServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	err := c.KillSandbox(ctx, "nope")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Message == "" {
		t.Fatalf("kill unknown = %#v", err)
	}
	if !client.IsNotFound(err) || !errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrConflict) {
		t.Errorf("class of %v", err)
	}
	bad := client.New(srv.URL, "e2b_00")
	if _, err := bad.ListSandboxes(ctx, nil); !client.IsUnauthenticated(err) {
		t.Errorf("bad key: %v", err)
	}
	// The base template is shared by every test run: it is only deleted
	// (refused) while this server's sandbox uses it.
	if _, err := c.CreateSandbox(ctx, client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTemplate(ctx, "base"); !client.IsConflict(err) {
		t.Errorf("delete template in use: %v", err)
	}

	// A non-JSON error body still gives an APIError.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	defer up.Close()
	err = client.New(up.URL, "k").Health(ctx)
	if !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &apiErr) || apiErr.Message != "upstream down" {
		t.Errorf("502 = %#v", err)
	}
	if err := client.New("not a url", "k").Health(ctx); err == nil {
		t.Error("bad URL: no error")
	}
}

func TestSandboxLifecycle(t *testing.T) {
	srv, rec, c := newServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.SetTimeout(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if info, err := c.GetSandbox(ctx, sb.ID); err != nil || time.Until(info.EndAt) > time.Minute || time.Until(info.EndAt) < 50*time.Second {
		t.Errorf("after SetTimeout(1m): %+v, %v", info, err)
	}
	if err := c.SetTimeout(ctx, sb.ID, client.NoTimeout); err != nil {
		t.Fatal(err)
	}
	if info, err := c.GetSandbox(ctx, sb.ID); err != nil || info.HasTimeout() {
		t.Errorf("after SetTimeout(NoTimeout): %+v, %v", info, err)
	}
	again, err := c.ConnectSandbox(ctx, sb.ID, &client.ConnectOptions{Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != sb.ID || again.EnvdAccessToken != sb.EnvdAccessToken {
		t.Errorf("connect = %+v, want %+v", again, sb)
	}
	if err := sb.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSandbox(ctx, sb.ID); !client.IsNotFound(err) {
		t.Errorf("get after kill: %v", err)
	}
	for _, r := range rec.requests() {
		if r.Path != "/health" && r.Header.Get("X-API-Key") != srv.APIKey {
			t.Errorf("%s %s without API key", r.Method, r.Path)
		}
	}
}

func TestKeysAndTemplates(t *testing.T) {
	_, _, c := newServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	k, err := c.CreateKey(ctx, "ci")
	if err != nil || k.Name != "ci" || k.Key == "" || k.CreatedAt.IsZero() || k.Admin {
		t.Fatalf("create key = %+v, %v", k, err)
	}
	keys, err := c.ListKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("list keys = %+v, %v", keys, err)
	}
	for _, l := range keys {
		if (l.ID == k.ID) == l.Admin || l.Prefix == "" {
			t.Errorf("listed key %+v", l)
		}
	}
	if err := c.DeleteKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteKey(ctx, "zz"); !client.IsNotFound(err) {
		t.Errorf("delete unknown key: %v", err)
	}
	ts, err := c.ListTemplates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ts, func(t client.Template) bool { return t.TemplateID == "base" })
	if i < 0 || ts[i].Aliases[0] != "base" || ts[i].SizeBytes == 0 || ts[i].BuildStatus != "ready" {
		t.Fatalf("templates = %+v", ts)
	}
	// The base template is shared by every test run: deleting is checked
	// on one that does not exist.
	if err := c.DeleteTemplate(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("delete unknown template: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("SBX_URL", "")
	t.Setenv("SBX_API_KEY", "")
	if _, err := client.FromEnv(); err == nil {
		t.Error("no key: no error")
	}
	t.Setenv("SBX_API_KEY", "e2b_ab")
	c, err := client.FromEnv()
	if err != nil || c.BaseURL() != client.DefaultURL {
		t.Errorf("default URL: %v, %v", c, err)
	}
	t.Setenv("SBX_URL", "ftp://x")
	if _, err := client.FromEnv(); err == nil {
		t.Error("ftp URL accepted")
	}
}
