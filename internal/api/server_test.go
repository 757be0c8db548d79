package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp/errhttptest"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/secret"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/wire"
)

// noRuntime is a sandbox.Runtime for tests that must never reach a runtime:
// every call fails the test.
type noRuntime struct{ t *testing.T }

func (r noRuntime) fail(method, id string) error {
	r.t.Errorf("runtime.%s(%q) called; these tests run without a runtime", method, id)
	return errdefs.New(errdefs.ErrUnavailable, "no runtime in tests")
}

func (r noRuntime) Start(_ context.Context, spec sandbox.BoxSpec) error {
	return r.fail("Start", spec.ID)
}
func (r noRuntime) State(_ context.Context, id string) (sandbox.BoxState, error) {
	return sandbox.BoxState{}, r.fail("State", id)
}
func (r noRuntime) Pause(_ context.Context, id string) error   { return r.fail("Pause", id) }
func (r noRuntime) Resume(_ context.Context, id string) error  { return r.fail("Resume", id) }
func (r noRuntime) Destroy(_ context.Context, id string) error { return r.fail("Destroy", id) }

// noTemplates knows no template.
type noTemplates struct{}

func (noTemplates) Get(_ context.Context, name string) (sandbox.Template, error) {
	return sandbox.Template{}, errdefs.New(errdefs.ErrNotFound, "template %q not found", name)
}

// testServer is an API server over real dependencies on a temporary
// directory, with no runtime and no templates.
type testServer struct {
	*Server
	db       *store.DB
	mgr      *sandbox.Manager
	adminKey string
	plainKey string
}

const testDomain = "sbx.test:49982"

func newTestServer(t *testing.T, cfg sandbox.Config) *testServer {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := NewKeys(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	_, admin, err := keys.Create(ctx, "admin", "", true)
	if err != nil {
		t.Fatal(err)
	}
	_, plain, err := keys.Create(ctx, "plain", "", false)
	if err != nil {
		t.Fatal(err)
	}
	tpls, err := template.NewStore(filepath.Join(dir, "templates"), nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	cfg.DataDir = dir
	if cfg.Runtimes == nil {
		cfg.Runtimes = map[string]sandbox.Runtime{"runc": noRuntime{t}}
	}
	mgr, err := sandbox.New(cfg, noTemplates{}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Close)
	ring, err := secret.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Domain: testDomain, Secrets: db, SecretKeys: ring}, mgr, keys, tpls, log)
	return &testServer{Server: s, db: db, mgr: mgr, adminKey: admin, plainKey: plain}
}

// do sends a request to the server in-process. key, when set, goes in
// X-API-Key; hdr adds more headers ("Name: value").
func (s *testServer) do(t *testing.T, method, target, key, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	req.Host = "127.0.0.1:49982"
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w
}

// wantError checks w's E2B error body (errhttptest.Want).
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, msg string) {
	t.Helper()
	errhttptest.Want(t, w, status, msg)
}

func TestHealth(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	w := s.do(t, "GET", "/health", "", "")
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"starting"`) {
		t.Errorf("before SetReady: %d %s, want 503 starting", w.Code, w.Body)
	}
	s.SetReady(true)
	w = s.do(t, "GET", "/health", "", "")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"ok"`) {
		t.Errorf("after SetReady: %d %s, want 200 ok", w.Code, w.Body)
	}
	s.SetReady(false)
	if w := s.do(t, "GET", "/health", "", ""); w.Code != http.StatusServiceUnavailable {
		t.Errorf("after SetReady(false): %d, want 503", w.Code)
	}
}

func TestNotReady(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	wantError(t, s.do(t, "GET", "/v2/sandboxes", s.adminKey, ""), 503, "sbx is starting")
}

func TestAuth(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	wrong := "e2b_" + strings.Repeat("0", 40)
	for _, tc := range []struct {
		name   string
		method string
		path   string
		hdr    []string
		status int
		msg    string
	}{
		{"no key", "GET", "/v2/sandboxes", nil, 401, "missing API key"},
		{"unknown key", "GET", "/v2/sandboxes", []string{"X-API-Key: " + wrong}, 401, "invalid API key"},
		{"malformed key", "GET", "/v2/sandboxes", []string{"X-API-Key: secret"}, 401, "invalid API key"},
		{"uppercase key", "GET", "/v2/sandboxes", []string{"X-API-Key: " + strings.ToUpper(s.adminKey)}, 401, "invalid API key"},
		{"bearer unknown", "GET", "/v2/sandboxes", []string{"Authorization: Bearer " + wrong}, 401, "invalid API key"},
		{"basic is not a key", "GET", "/v2/sandboxes", []string{"Authorization: Basic " + s.adminKey}, 401, "missing API key"},
		{"plain key on admin route", "GET", "/sbx/v1/keys", []string{"X-API-Key: " + s.plainKey}, 403, "admin API key"},
		{"cross-origin", "GET", "/v2/sandboxes", []string{"X-API-Key: " + s.adminKey, "Origin: https://evil.example"}, 403, "cross-origin"},
		{"cross-origin health", "GET", "/health", []string{"Origin: https://evil.example"}, 403, "cross-origin"},
		{"bad origin", "GET", "/v2/sandboxes", []string{"X-API-Key: " + s.adminKey, "Origin: ::"}, 403, "cross-origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, s.do(t, tc.method, tc.path, "", "", tc.hdr...), tc.status, tc.msg)
		})
	}

	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		{"X-API-Key", []string{"X-API-Key: " + s.plainKey}},
		{"Bearer", []string{"Authorization: Bearer " + s.plainKey}},
		{"same origin", []string{"X-API-Key: " + s.plainKey, "Origin: http://127.0.0.1:49982"}},
	} {
		t.Run("ok "+tc.name, func(t *testing.T) {
			if w := s.do(t, "GET", "/v2/sandboxes", "", "", tc.hdr...); w.Code != http.StatusOK {
				t.Errorf("status = %d, want 200; body %s", w.Code, w.Body)
			}
		})
	}
}

func TestNoRoute(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	wantError(t, s.do(t, "GET", "/nope", s.adminKey, ""), 404, "no route for GET /nope")
	// A known path with another method is not found too (there is no 405).
	wantError(t, s.do(t, "PUT", "/v2/sandboxes", s.adminKey, ""), 404, "no route for PUT /v2/sandboxes")
}

// TestHandlers drives the control plane through ServeHTTP for everything that
// needs no runtime: sandboxes are records put straight into the store.
func TestHandlers(t *testing.T) {
	s := newTestServer(t, sandbox.Config{DefaultTimeout: time.Hour, MaxTimeout: 2 * time.Hour})
	s.SetReady(true)
	ctx := context.Background()
	now := time.Now().UTC()
	running := &store.Sandbox{
		ID: "arunningsandbox00001", Template: "base", State: sandbox.StateRunning, Runtime: "runc",
		CreatedAt: now, StartedAt: now, EndAt: now.Add(30 * time.Minute),
		Metadata: map[string]string{"user": "alice"}, CPUs: 1.5, MemoryMB: 512, EnvdToken: "tok",
	}
	failed := &store.Sandbox{
		ID: "bfailedsandbox000001", Template: "base", State: sandbox.StateFailed, Runtime: "runc",
		CreatedAt: now.Add(-time.Minute), StartedAt: now.Add(-time.Minute), Error: "it died",
	}
	for _, sb := range []*store.Sandbox{running, failed} {
		if err := s.db.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	key := s.plainKey

	t.Run("create", func(t *testing.T) {
		wantError(t, s.do(t, "POST", "/v2/sandboxes", key, ""), 400, "request body is empty")
		wantError(t, s.do(t, "POST", "/v2/sandboxes", key, `{}`), 400, "templateID is required")
		wantError(t, s.do(t, "POST", "/v2/sandboxes", key, `{"templateID":"base","timeout":-1}`), 400, "timeout must not be negative")
		wantError(t, s.do(t, "POST", "/sandboxes", key, `{"templateID":"base","timeout":0}`), 400, "server maximum")
		wantError(t, s.do(t, "POST", "/v2/sandboxes", key, `{"templateID":"base","timeout":"x"}`), 400, `field "timeout"`)
		wantError(t, s.do(t, "POST", "/v2/sandboxes", key, `{"templateID":"base","envVars":{"A=B":"c"}}`), 400, "contains '='")
		wantError(t, s.do(t, "POST", "/v2/sandboxes", key, `{"templateID":"nope"}`), 404, `template "nope" not found`)
		wantError(t, s.do(t, "POST", "/v2/sandboxes", key, `{"templateID":"base","runtime":"kata"}`), 400, `unknown runtime "kata"; available: runc`)
		wantError(t, s.do(t, "POST", "/v2/sandboxes", key, `{"templateID":"base","runtime":7}`), 400, `field "runtime"`)
		big := `{"templateID":"base","metadata":{"k":"` + strings.Repeat("x", maxBodyBytes) + `"}}`
		wantError(t, s.do(t, "POST", "/v2/sandboxes", key, big), 413, "request body too large")
	})

	t.Run("list", func(t *testing.T) {
		var got []wire.ListedSandbox
		w := s.do(t, "GET", "/v2/sandboxes", key, "")
		decodeBody(t, w, 200, &got)
		if len(got) != 1 || got[0].SandboxID != running.ID || got[0].State != "running" || got[0].CPUCount != 2 || got[0].Metadata["user"] != "alice" || got[0].Runtime != "runc" {
			t.Errorf("default list = %+v, want only the running sandbox", got)
		}
		if h := w.Header().Get("X-Total-Running"); h != "1" {
			t.Errorf("X-Total-Running = %q, want 1", h)
		}
		decodeBody(t, s.do(t, "GET", "/v2/sandboxes?state=running,failed&order=asc", key, ""), 200, &got)
		if len(got) != 2 || got[0].SandboxID != failed.ID {
			t.Errorf("asc list of running,failed = %+v, want failed then running", got)
		}
		w = s.do(t, "GET", "/v2/sandboxes?state=running&state=failed&limit=1", key, "")
		decodeBody(t, w, 200, &got)
		if len(got) != 1 || got[0].SandboxID != running.ID || w.Header().Get("X-Next-Token") != "1" {
			t.Errorf("first page = %+v, next %q; want the running sandbox and next token 1", got, w.Header().Get("X-Next-Token"))
		}
		decodeBody(t, s.do(t, "GET", "/v2/sandboxes?state=failed,running&limit=1&nextToken=1", key, ""), 200, &got)
		if len(got) != 1 || got[0].SandboxID != failed.ID {
			t.Errorf("second page = %+v, want the failed sandbox", got)
		}
		decodeBody(t, s.do(t, "GET", "/v2/sandboxes?metadata=user%3Dbob", key, ""), 200, &got)
		if len(got) != 0 {
			t.Errorf("metadata user=bob = %+v, want none", got)
		}
		decodeBody(t, s.do(t, "GET", "/sandboxes?metadata=user%3Dalice", key, ""), 200, &got)
		if len(got) != 1 || got[0].SandboxID != running.ID {
			t.Errorf("v1 list = %+v, want the running sandbox", got)
		}
		wantError(t, s.do(t, "GET", "/v2/sandboxes?state=killed", key, ""), 400, "unknown state")
		wantError(t, s.do(t, "GET", "/v2/sandboxes?limit=-1", key, ""), 400, "not a valid")
		wantError(t, s.do(t, "GET", "/v2/sandboxes?nextToken=x", key, ""), 400, "invalid nextToken")
	})

	t.Run("get", func(t *testing.T) {
		var got wire.SandboxDetail
		decodeBody(t, s.do(t, "GET", "/sandboxes/"+failed.ID, key, ""), 200, &got)
		if got.State != "failed" || got.Error != "it died" || got.Lifecycle.OnTimeout != "kill" || got.Domain == nil || *got.Domain != testDomain || got.Runtime != "runc" {
			t.Errorf("detail = %+v", got)
		}
		wantError(t, s.do(t, "GET", "/sandboxes/nosuchsandbox", key, ""), 404, "not found")
		wantError(t, s.do(t, "DELETE", "/sandboxes/nosuchsandbox", key, ""), 404, "not found")
	})

	t.Run("timeouts", func(t *testing.T) {
		path := "/sandboxes/" + running.ID
		wantError(t, s.do(t, "POST", path+"/timeout", key, `{}`), 400, "timeout is required")
		wantError(t, s.do(t, "POST", path+"/timeout", key, `{"timeout":0}`), 400, "server maximum")
		wantError(t, s.do(t, "POST", path+"/timeout", key, `{"timeout":7201}`), 400, "server maximum")
		wantError(t, s.do(t, "POST", "/sandboxes/"+failed.ID+"/timeout", key, `{"timeout":60}`), 409, "is failed")
		wantError(t, s.do(t, "POST", "/sandboxes/nosuchsandbox/refreshes", key, ``), 404, "not found")
		wantError(t, s.do(t, "POST", "/sandboxes/"+failed.ID+"/connect", key, ``), 409, "is failed")

		if w := s.do(t, "POST", path+"/timeout", key, `{"timeout":60}`); w.Code != 204 {
			t.Fatalf("set timeout: %d %s", w.Code, w.Body)
		}
		end := s.endAt(t, running.ID)
		if d := time.Until(end); d < 50*time.Second || d > 61*time.Second {
			t.Errorf("after timeout 60: ends in %s", d)
		}
		// Refreshes only extend: a shorter duration leaves the end alone.
		if w := s.do(t, "POST", path+"/refreshes", key, `{"duration":10}`); w.Code != 204 {
			t.Fatalf("refresh: %d %s", w.Code, w.Body)
		}
		if got := s.endAt(t, running.ID); !got.Equal(end) {
			t.Errorf("a shorter refresh moved the end from %s to %s", end, got)
		}
		// No body: the server default (an hour).
		if w := s.do(t, "POST", path+"/refreshes", key, ``); w.Code != 204 {
			t.Fatalf("refresh: %d %s", w.Code, w.Body)
		}
		if d := time.Until(s.endAt(t, running.ID)); d < 59*time.Minute {
			t.Errorf("after a refresh with the default: ends in %s", d)
		}
		var got wire.Sandbox
		decodeBody(t, s.do(t, "POST", "/v2"+path+"/connect", key, `{"timeout":7000}`), 200, &got)
		if got.SandboxID != running.ID || got.EnvdAccessToken != "tok" || got.EnvdVersion != EnvdVersion || got.TrafficAccessToken != nil {
			t.Errorf("connect = %+v", got)
		}
		if d := time.Until(s.endAt(t, running.ID)); d < 6900*time.Second {
			t.Errorf("after connect with 7000s: ends in %s", d)
		}
	})

	t.Run("templates", func(t *testing.T) {
		var got []wire.Template
		decodeBody(t, s.do(t, "GET", "/templates", key, ""), 200, &got)
		if len(got) != 0 {
			t.Errorf("templates = %+v, want none", got)
		}
		wantError(t, s.do(t, "DELETE", "/templates/Bad..Name", key, ""), 400, "invalid template name")
		wantError(t, s.do(t, "DELETE", "/templates/base", key, ""), 409, "used by 1 sandbox")
		wantError(t, s.do(t, "DELETE", "/templates/other", key, ""), 404, "not found")
	})

	t.Run("keys", func(t *testing.T) {
		var created wire.Key
		decodeBody(t, s.do(t, "POST", "/sbx/v1/keys", s.adminKey, `{"name":"ci"}`), 201, &created)
		if !keyPattern.MatchString(created.Key) || created.Admin || created.Name != "ci" || created.Prefix != created.Key[:10] {
			t.Errorf("created key = %+v", created)
		}
		if w := s.do(t, "GET", "/v2/sandboxes", created.Key, ""); w.Code != 200 {
			t.Errorf("the new key does not authenticate: %d", w.Code)
		}
		var list []wire.Key
		decodeBody(t, s.do(t, "GET", "/sbx/v1/keys", s.adminKey, ""), 200, &list)
		if len(list) != 3 {
			t.Errorf("keys = %+v, want 3", list)
		}
		for _, k := range list {
			if k.Key != "" {
				t.Errorf("list shows the secret of %s", k.ID)
			}
		}
		decodeBody(t, s.do(t, "POST", "/sbx/v1/keys", s.adminKey, ``), 201, &created)
		wantError(t, s.do(t, "POST", "/sbx/v1/keys", s.adminKey, `{"name":"`+strings.Repeat("n", 129)+`"}`), 400, "at most 128")
		if w := s.do(t, "DELETE", "/sbx/v1/keys/"+created.ID, s.adminKey, ""); w.Code != 204 {
			t.Errorf("delete key: %d %s", w.Code, w.Body)
		}
		wantError(t, s.do(t, "DELETE", "/sbx/v1/keys/"+created.ID, s.adminKey, ""), 404, "not found")
		adminID := list[0].ID
		wantError(t, s.do(t, "DELETE", "/sbx/v1/keys/"+adminID, s.adminKey, ""), 409, "last admin key")
	})
}

func (s *testServer) endAt(t *testing.T, id string) time.Time {
	t.Helper()
	sb, err := s.db.GetSandbox(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return sb.EndAt
}

func decodeBody(t *testing.T, w *httptest.ResponseRecorder, status int, v any) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("body %s: %v", w.Body, err)
	}
}
