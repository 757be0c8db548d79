package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// blockingDashboard is a Dashboard whose stream lasts until its request's
// context ends, as the real one's does.
type blockingDashboard struct {
	started chan struct{}
	ended   chan error
}

func (d *blockingDashboard) SetHeaders(h http.Header) { h.Set("X-Frame-Options", "DENY") }
func (d *blockingDashboard) ServeAssets(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusNoContent)
}
func (d *blockingDashboard) Stream(w http.ResponseWriter, r *http.Request, team string) error {
	close(d.started)
	<-r.Context().Done()
	d.ended <- r.Context().Err()
	return nil
}
func (d *blockingDashboard) Sandbox(w http.ResponseWriter, r *http.Request) error { return nil }

func newSessionServer(t *testing.T) (*testServer, *blockingDashboard) {
	t.Helper()
	s := newTestServer(t, sandbox.Config{})
	d := &blockingDashboard{started: make(chan struct{}), ended: make(chan error, 1)}
	s.cfg.Sessions = NewSessions(s.db, s.keys)
	s.cfg.Dashboard = d
	s.SetReady(true)
	return s, d
}

// signIn signs in with key and returns the cookie header and the session.
func signIn(t *testing.T, s *testServer, key string) (string, wire.DashboardSession, *http.Cookie) {
	t.Helper()
	w := s.do(t, "POST", "/dashboard/api/session", "", `{"apiKey":"`+key+`"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("sign in: %d %s", w.Code, w.Body)
	}
	var ss wire.DashboardSession
	if err := json.Unmarshal(w.Body.Bytes(), &ss); err != nil {
		t.Fatal(err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != SessionCookie {
		t.Fatalf("cookies %v", cookies)
	}
	return "Cookie: " + SessionCookie + "=" + cookies[0].Value, ss, cookies[0]
}

func TestSessionSignIn(t *testing.T) {
	s, _ := newSessionServer(t)
	for name, body := range map[string]string{
		"wrong key":     `{"apiKey":"e2b_0000000000000000000000000000000000000000"}`,
		"malformed key": `{"apiKey":"sbx_nope"}`,
		"empty":         `{}`,
	} {
		w := s.do(t, "POST", "/dashboard/api/session", "", body)
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `"code":401`) || !strings.Contains(w.Body.String(), "invalid API key") {
			t.Errorf("%s: %d %s; want 401 invalid API key", name, w.Code, w.Body)
		}
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("%s: a cookie was set", name)
		}
	}
	if w := s.do(t, "POST", "/dashboard/api/session", "", `{"apiKey":`); w.Code != http.StatusBadRequest {
		t.Errorf("malformed body: %d %s", w.Code, w.Body)
	}

	cookie, ss, c := signIn(t, s, s.adminKey)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 43200 || c.Path != "/" || c.Secure {
		t.Errorf("cookie %+v; want HttpOnly, SameSite=Strict, Max-Age=43200, Path=/, not Secure over plain HTTP", c)
	}
	if ss.Role != "admin" || !ss.ServerAdmin || ss.KeyName != "admin" || ss.Team != "default" || len(ss.CSRFToken) < 32 || time.Until(ss.ExpiresAt) < 11*time.Hour {
		t.Errorf("session %+v", ss)
	}
	w := s.do(t, "GET", "/dashboard/api/session", "", "", cookie)
	var got wire.DashboardSession
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &got) != nil || got.KeyID != ss.KeyID || got.CSRFToken != ss.CSRFToken {
		t.Fatalf("GET session: %d %s", w.Code, w.Body)
	}
	// The cookie authenticates the other routes as the key.
	if w := s.do(t, "GET", "/v2/sandboxes", "", "", cookie); w.Code != http.StatusOK {
		t.Errorf("GET /v2/sandboxes with the cookie: %d %s", w.Code, w.Body)
	}
	if w := s.do(t, "GET", "/sbx/v1/keys", "", "", cookie); w.Code != http.StatusOK {
		t.Errorf("GET /sbx/v1/keys with an admin's cookie: %d %s", w.Code, w.Body)
	}
	// A plain key's session is a member's.
	pc, pss, _ := signIn(t, s, s.plainKey)
	if pss.Role != "member" || pss.ServerAdmin {
		t.Errorf("plain key's session %+v", pss)
	}
	if w := s.do(t, "GET", "/sbx/v1/keys", "", "", pc); w.Code != http.StatusForbidden {
		t.Errorf("GET /sbx/v1/keys with a member's cookie: %d %s", w.Code, w.Body)
	}
	// A made-up cookie, and none.
	if w := s.do(t, "GET", "/v2/sandboxes", "", "", "Cookie: "+SessionCookie+"=forged"); w.Code != http.StatusUnauthorized {
		t.Errorf("forged cookie: %d %s", w.Code, w.Body)
	}
	if w := s.do(t, "GET", "/dashboard/api/session", "", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("GET session without cookie: %d %s", w.Code, w.Body)
	}
	if w := s.do(t, "GET", "/dashboard/api/session", s.adminKey, ""); w.Code != http.StatusUnauthorized {
		t.Errorf("GET session with a key, no cookie: %d %s", w.Code, w.Body)
	}
}

// TestSessionCSRF: a state-changing call authenticated by the cookie
// needs the session's CSRF token; one authenticated by a key does not.
func TestSessionCSRF(t *testing.T) {
	s, _ := newSessionServer(t)
	cookie, ss, _ := signIn(t, s, s.adminKey)
	const body = `{"templateID":"no-such-template"}`
	for name, hdr := range map[string][]string{
		"missing": {cookie},
		"wrong":   {cookie, "X-CSRF-Token: " + strings.Repeat("x", len(ss.CSRFToken))},
		"empty":   {cookie, "X-CSRF-Token: "},
	} {
		w := s.do(t, "POST", "/sandboxes", "", body, hdr...)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "missing or invalid CSRF token") {
			t.Errorf("%s CSRF token: %d %s; want 403", name, w.Code, w.Body)
		}
		if w := s.do(t, "DELETE", "/dashboard/api/session", "", "", hdr...); w.Code != http.StatusForbidden {
			t.Errorf("sign out with %s CSRF token: %d %s; want 403", name, w.Code, w.Body)
		}
	}
	// With the token the request is served (the template is unknown).
	if w := s.do(t, "POST", "/sandboxes", "", body, cookie, "X-CSRF-Token: "+ss.CSRFToken); w.Code != http.StatusNotFound {
		t.Errorf("with the CSRF token: %d %s; want 404 (no such template)", w.Code, w.Body)
	}
	// Another session's token is refused.
	_, other, _ := signIn(t, s, s.adminKey)
	if w := s.do(t, "POST", "/sandboxes", "", body, cookie, "X-CSRF-Token: "+other.CSRFToken); w.Code != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d %s; want 403", w.Code, w.Body)
	}
	// A key needs none.
	if w := s.do(t, "POST", "/sandboxes", s.adminKey, body); w.Code != http.StatusNotFound {
		t.Errorf("with a key: %d %s; want 404", w.Code, w.Body)
	}
}

// TestSessionRevoked: signing out refuses the cookie at once and ends the
// stream the session had open; deleting the key ends its sessions.
func TestSessionRevoked(t *testing.T) {
	s, d := newSessionServer(t)
	cookie, ss, _ := signIn(t, s, s.adminKey)
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- s.do(t, "GET", "/dashboard/api/sandboxes/stream", "", "", cookie) }()
	select {
	case <-d.started:
	case <-time.After(10 * time.Second):
		t.Fatal("stream never started")
	}
	if w := s.do(t, "DELETE", "/dashboard/api/session", "", "", cookie, "X-CSRF-Token: "+ss.CSRFToken); w.Code != http.StatusNoContent {
		t.Fatalf("sign out: %d %s", w.Code, w.Body)
	} else if c := w.Result().Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Errorf("sign out cookies %v; want the cookie cleared", c)
	}
	select {
	case err := <-d.ended:
		if err != context.Canceled {
			t.Errorf("stream ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived its session")
	}
	<-done
	for _, p := range []string{"/dashboard/api/session", "/v2/sandboxes"} {
		if w := s.do(t, "GET", p, "", "", cookie); w.Code != http.StatusUnauthorized {
			t.Errorf("GET %s after sign out: %d %s", p, w.Code, w.Body)
		}
	}

	// Deleting the key behind a session ends it.
	rec, plain, err := s.keys.Create(context.Background(), "doomed", "", false)
	if err != nil {
		t.Fatal(err)
	}
	pc, _, _ := signIn(t, s, plain)
	if w := s.do(t, "DELETE", "/sbx/v1/keys/"+rec.ID, s.adminKey, ""); w.Code != http.StatusNoContent {
		t.Fatalf("delete key: %d %s", w.Code, w.Body)
	}
	if w := s.do(t, "GET", "/dashboard/api/session", "", "", pc); w.Code != http.StatusUnauthorized {
		t.Errorf("session of a deleted key: %d %s", w.Code, w.Body)
	}
	if _, err := s.db.GetSession(context.Background(), hashKey(strings.TrimPrefix(pc, "Cookie: "+SessionCookie+"="))); err == nil {
		t.Error("the deleted key's session is still stored")
	}
}

// TestDashboardRouting: every response under /dashboard/ carries the
// Dashboard's headers, errors and cross-origin refusals included, and
// /dashboard redirects to /dashboard/.
func TestDashboardRouting(t *testing.T) {
	s, _ := newSessionServer(t)
	for _, c := range []struct {
		method, path string
		hdr          []string
		want         int
	}{
		{"GET", "/dashboard/", nil, http.StatusNoContent},
		{"GET", "/dashboard/sandboxes/x", nil, http.StatusNoContent},
		{"GET", "/dashboard/api/session", nil, http.StatusUnauthorized},
		{"POST", "/dashboard/api/session", []string{"Origin: http://evil.example"}, http.StatusForbidden},
		{"GET", "/dashboard", nil, http.StatusMovedPermanently},
	} {
		w := s.do(t, c.method, c.path, "", "", c.hdr...)
		if w.Code != c.want || w.Header().Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s %s: %d %v; want %d with the dashboard's headers", c.method, c.path, w.Code, w.Header(), c.want)
		}
	}
	if w := s.do(t, "GET", "/dashboard", "", ""); w.Header().Get("Location") != "/dashboard/" {
		t.Errorf("GET /dashboard: Location %q", w.Header().Get("Location"))
	}
	if w := s.do(t, "GET", "/v2/sandboxes", s.adminKey, ""); w.Header().Get("X-Frame-Options") != "" {
		t.Errorf("an E2B route got the dashboard's headers: %v", w.Header())
	}
}

// TestSessionRecheck: a session another node revoked (its row gone from
// the shared store) has its open requests ended by Recheck; an expired
// session is refused.
func TestSessionRecheck(t *testing.T) {
	s, _ := newSessionServer(t)
	ctx := context.Background()
	ss := s.cfg.Sessions
	key, _ := s.keys.Verify(s.adminKey)
	keep, keepRec, err := ss.Create(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	_, goneRec, err := ss.Create(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	keepCtx, keepDone := ss.track(ctx, keepRec)
	defer keepDone()
	goneCtx, goneDone := ss.track(ctx, goneRec)
	defer goneDone()
	if err := s.db.DeleteSession(ctx, goneRec.Hash); err != nil { // as another node signs out
		t.Fatal(err)
	}
	ss.Recheck(ctx)
	if goneCtx.Err() == nil {
		t.Error("the request of a session revoked elsewhere goes on after Recheck")
	}
	if keepCtx.Err() != nil {
		t.Error("Recheck ended the request of a live session")
	}
	if _, _, err := ss.Lookup(ctx, keep); err != nil {
		t.Errorf("live session refused: %v", err)
	}
	old := &store.Session{Hash: hashKey("expired-session-id"), KeyID: key.ID, CSRFToken: "c", CreatedAt: time.Now().Add(-13 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)}
	if err := s.db.PutSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	if w := s.do(t, "GET", "/v2/sandboxes", "", "", "Cookie: "+SessionCookie+"=expired-session-id"); w.Code != http.StatusUnauthorized {
		t.Errorf("expired session: %d %s", w.Code, w.Body)
	}
	if n, err := ss.Prune(ctx); err != nil || n != 1 {
		t.Errorf("Prune = %d, %v; want the expired session", n, err)
	}
}

// TestSessionCookieSecure: over TLS the cookie is Secure.
func TestSessionCookieSecure(t *testing.T) {
	s, _ := newSessionServer(t)
	req := httptest.NewRequest("POST", "https://127.0.0.1:49982/dashboard/api/session", strings.NewReader(`{"apiKey":"`+s.adminKey+`"}`))
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	c := w.Result().Cookies()
	if w.Code != http.StatusOK || len(c) != 1 || !c[0].Secure || !c[0].HttpOnly {
		t.Fatalf("sign in over TLS: %d, cookies %+v; want one Secure, HttpOnly cookie", w.Code, c)
	}
}
