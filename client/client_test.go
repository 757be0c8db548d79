package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/cli/fakesbx"
)

func newFake(t *testing.T) (*fakesbx.Server, *client.Client) {
	t.Helper()
	f := fakesbx.New(t)
	return f, client.New(f.URL, f.APIKey)
}

func TestCreateTimeoutEncoding(t *testing.T) {
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
			f, c := newFake(t)
			sb, err := c.CreateSandbox(context.Background(), client.CreateOptions{Timeout: tt.timeout, Metadata: map[string]string{"a": "b"}, Env: map[string]string{"K": "V"}})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := f.Last("/v2/sandboxes")
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
			info, err := c.GetSandbox(context.Background(), sb.ID)
			if err != nil {
				t.Fatal(err)
			}
			if (tt.timeout == client.NoTimeout) == info.HasTimeout() {
				t.Errorf("HasTimeout = %v for timeout %v (endAt %v)", info.HasTimeout(), tt.timeout, info.EndAt)
			}
		})
	}
}

func TestListPagesAndFilters(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
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
	for _, r := range f.Requests {
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
	req, _ := f.Last("/v2/sandboxes")
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
	f, c := newFake(t)
	ctx := context.Background()
	err := c.KillSandbox(ctx, "nope")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Message == "" {
		t.Fatalf("kill unknown = %#v", err)
	}
	if !client.IsNotFound(err) || !errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrConflict) {
		t.Errorf("class of %v", err)
	}
	bad := client.New(f.URL, "e2b_00")
	if _, err := bad.ListSandboxes(ctx, nil); !client.IsUnauthenticated(err) {
		t.Errorf("bad key: %v", err)
	}
	if _, err := c.CreateSandbox(ctx, client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTemplate(ctx, "base"); !client.IsConflict(err) {
		t.Errorf("delete template in use: %v", err)
	}

	// A non-JSON error body still gives an APIError.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	defer srv.Close()
	err = client.New(srv.URL, "k").Health(ctx)
	if !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &apiErr) || apiErr.Message != "upstream down" {
		t.Errorf("502 = %#v", err)
	}
	if err := client.New("not a url", "k").Health(ctx); err == nil {
		t.Error("bad URL: no error")
	}
}

func TestSandboxLifecycle(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
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
	if got := f.Find(sb.ID).Timeout; got == nil || *got != 60 {
		t.Errorf("timeout = %v, want 60", got)
	}
	if err := c.SetTimeout(ctx, sb.ID, client.NoTimeout); err != nil {
		t.Fatal(err)
	}
	if got := f.Find(sb.ID).Timeout; got == nil || *got != 0 {
		t.Errorf("timeout = %v, want 0", got)
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
	for _, r := range f.Requests {
		if r.Path != "/health" && r.Header.Get("X-API-Key") != f.APIKey {
			t.Errorf("%s %s without API key", r.Method, r.Path)
		}
	}
}

func TestKeysAndTemplates(t *testing.T) {
	_, c := newFake(t)
	ctx := context.Background()
	k, err := c.CreateKey(ctx, "ci")
	if err != nil || k.Name != "ci" || k.Key == "" || k.CreatedAt.IsZero() {
		t.Fatalf("create key = %+v, %v", k, err)
	}
	keys, err := c.ListKeys(ctx)
	if err != nil || len(keys) != 1 || !keys[0].Admin || keys[0].Prefix == "" {
		t.Fatalf("list keys = %+v, %v", keys, err)
	}
	if err := c.DeleteKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteKey(ctx, "zz"); !client.IsNotFound(err) {
		t.Errorf("delete unknown key: %v", err)
	}
	ts, err := c.ListTemplates(ctx)
	if err != nil || len(ts) != 1 || ts[0].TemplateID != "base" || ts[0].Aliases[0] != "default" || ts[0].SizeBytes == 0 {
		t.Fatalf("templates = %+v, %v", ts, err)
	}
	if err := c.DeleteTemplate(ctx, "base"); err != nil {
		t.Fatal(err)
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
