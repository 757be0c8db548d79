package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/api"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp/errhttptest"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/template"
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

const testDomain = "sbx.test:49982"

// testHandler is sbx serve's handler (control plane and data plane) over
// real dependencies on a temporary directory, with no runtime and no
// templates.
type testHandler struct {
	handler
	db  *store.DB
	mgr *sandbox.Manager
}

func newTestHandler(t *testing.T) *testHandler {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys, err := api.NewKeys(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	tpls, err := template.NewStore(filepath.Join(dir, "templates"), nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	mgr, err := sandbox.New(sandbox.Config{DataDir: dir, Runtimes: map[string]sandbox.Runtime{"runc": noRuntime{t}}}, noTemplates{}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Close)
	apiSrv := api.New(api.Config{Domain: testDomain}, mgr, keys, tpls, log)
	px := newProxy(testDomain, mgr, nil, log)
	t.Cleanup(px.Close)
	return &testHandler{handler: handler{proxy: px, api: apiSrv, log: log}, db: db, mgr: mgr}
}

// do sends a request to the handler in-process; hdr adds headers
// ("Name: value", "Host: ..." sets the Host).
func (h *testHandler) do(t *testing.T, method, target string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.Host = "127.0.0.1:49982"
	for _, hd := range hdr {
		k, v, _ := strings.Cut(hd, ": ")
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// wantError checks w's E2B error body (errhttptest.Want).
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, msg string) {
	t.Helper()
	errhttptest.Want(t, w, status, msg)
}

// TestNotReady checks that the data plane, like the control plane, answers
// 503 until the server is ready.
func TestNotReady(t *testing.T) {
	h := newTestHandler(t)
	wantError(t, h.do(t, "GET", "/", "E2b-Sandbox-Id: abc", "E2b-Sandbox-Port: 49983"), 503, "sbx is starting")
}

// TestDataPlaneRouting checks which requests the data plane takes and what
// it answers for sandboxes it cannot reach, without a runtime.
func TestDataPlaneRouting(t *testing.T) {
	h := newTestHandler(t)
	h.api.SetReady(true)
	now := time.Now().UTC()
	failed := &store.Sandbox{ID: "cfailedsandbox000001", Template: "base", State: sandbox.StateFailed, CreatedAt: now, StartedAt: now}
	if err := h.db.PutSandbox(context.Background(), failed); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
		msg    string
	}{
		{"headers, unknown sandbox", []string{"E2b-Sandbox-Id: nosuchsandbox", "E2b-Sandbox-Port: 49983"}, 502, "not found"},
		{"headers, failed sandbox", []string{"E2b-Sandbox-Id: " + failed.ID, "E2b-Sandbox-Port: 3000"}, 502, "is failed"},
		{"headers, no port", []string{"E2b-Sandbox-Id: nosuchsandbox"}, 400, "between 1 and 65535"},
		{"headers, port 0", []string{"E2b-Sandbox-Id: nosuchsandbox", "E2b-Sandbox-Port: 0"}, 400, "between 1 and 65535"},
		{"headers, port too big", []string{"E2b-Sandbox-Id: nosuchsandbox", "E2b-Sandbox-Port: 65536"}, 400, "between 1 and 65535"},
		{"headers skip the origin check", []string{"E2b-Sandbox-Id: nosuchsandbox", "E2b-Sandbox-Port: 49983", "Origin: https://evil.example"}, 502, "not found"},
		{"host", []string{"Host: 49983-nosuchsandbox." + testDomain}, 502, "not found"},
		{"host without the domain's port", []string{"Host: 3000-nosuchsandbox.sbx.test"}, 502, "not found"},
		{"host, failed sandbox", []string{"Host: 8080-" + failed.ID + "." + testDomain}, 502, "is failed"},
		{"host, port 0", []string{"Host: 0-nosuchsandbox." + testDomain}, 400, "between 1 and 65535"},
		// Hosts that are not {port}-{id}.{domain} go to the control plane.
		{"host, no port label", []string{"Host: nosuchsandbox." + testDomain}, 404, "no route"},
		{"host, nested label", []string{"Host: 3000-a.b." + testDomain}, 404, "no route"},
		{"host, other domain", []string{"Host: 3000-nosuchsandbox.example.com"}, 404, "no route"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.do(t, "GET", "/some/path", tc.hdr...), tc.status, tc.msg)
		})
	}
}

// TestPrivatePorts checks the traffic token on a private sandbox's ports
// before anything is forwarded (there is no runtime: a request that passes
// the check finds no agent, 502), and that the agent's port is exempt.
func TestPrivatePorts(t *testing.T) {
	h := newTestHandler(t)
	h.api.SetReady(true)
	now := time.Now().UTC()
	token := strings.Repeat("ab", 32)
	sb := &store.Sandbox{ID: "cprivatesandbox00001", Template: "base", State: sandbox.StateRunning, CreatedAt: now, StartedAt: now, EnvdToken: "tok", TrafficToken: token}
	if err := h.db.PutSandbox(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	host := "Host: 3000-" + sb.ID + "." + testDomain
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
		msg    string
	}{
		{"host, no token", []string{host}, 403, "private"},
		{"headers, no token", []string{"E2b-Sandbox-Id: " + sb.ID, "E2b-Sandbox-Port: 3000"}, 403, "private"},
		{"wrong token", []string{host, "E2b-Traffic-Access-Token: " + strings.Repeat("ab", 31) + "aa"}, 403, "invalid traffic access token"},
		{"longer token", []string{host, "E2b-Traffic-Access-Token: " + token + "a"}, 403, "invalid traffic access token"},
		{"the envd token", []string{host, "E2b-Traffic-Access-Token: tok"}, 403, "invalid traffic access token"},
		{"the token", []string{host, "E2b-Traffic-Access-Token: " + token}, 502, "not reachable"},
		{"the agent's port needs none", []string{"Host: 49983-" + sb.ID + "." + testDomain}, 502, "not reachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.do(t, "GET", "/", tc.hdr...), tc.status, tc.msg)
		})
	}
}

// TestPortDialerNone checks that the adapter hands the proxy no dialer (a nil
// interface, not a nil *sandbox.PortDialer in one) for a sandbox whose
// runtime has its own network stack, so its ports go through its agent.
func TestPortDialerNone(t *testing.T) {
	h := newTestHandler(t)
	now := time.Now().UTC()
	sb := &store.Sandbox{ID: "drunningsandbox00001", Template: "base", State: sandbox.StateRunning, Runtime: "runc", CreatedAt: now, StartedAt: now}
	if err := h.db.PutSandbox(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	pd, err := proxySandboxes{h.mgr}.PortDialer(context.Background(), sb.ID)
	if err != nil || pd != nil {
		t.Fatalf("PortDialer = %#v, %v; want nil, nil", pd, err)
	}
	if _, err := (proxySandboxes{h.mgr}).PortDialer(context.Background(), "nosuchsandbox"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("PortDialer of an unknown sandbox: %v, want not found", err)
	}
}
