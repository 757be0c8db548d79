package dashboard

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

var discard = slog.New(slog.DiscardHandler)

func get(t *testing.T, a *assets, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	a.serve(w, httptest.NewRequest("GET", path, nil))
	return w
}

// TestAssetsNotBuilt: a server built without the front end says so.
func TestAssetsNotBuilt(t *testing.T) {
	a := loadAssets(fstest.MapFS{"dist/README.md": {Data: []byte("x")}}, discard)
	for _, p := range []string{"/dashboard/", "/dashboard/sandboxes", "/dashboard/index.html"} {
		w := get(t, a, p)
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "run scripts/build-dashboard.sh") {
			t.Errorf("GET %s: %d %q; want 503 naming the build script", p, w.Code, w.Body)
		}
	}
	if w := get(t, a, "/dashboard/assets/app.js"); w.Code != http.StatusNotFound {
		t.Errorf("an asset without a build: %d; want 404", w.Code)
	}
}

func TestAssets(t *testing.T) {
	index := `<html><head><style nonce="__CSP_NONCE__"></style><script type="module" src="/dashboard/assets/app.js"></script></head></html>`
	a := loadAssets(fstest.MapFS{
		"dist/index.html":          {Data: []byte(index)},
		"dist/assets/app-abc.js":   {Data: []byte("console.log(1)")},
		"dist/favicon.svg":         {Data: []byte("<svg/>")},
		"dist/README.md":           {Data: []byte("readme")},
		"dist/.vite/manifest.json": {Data: []byte("{}")},
	}, discard)
	nonces := map[string]bool{}
	for _, p := range []string{"/dashboard/", "/dashboard/sandboxes", "/dashboard/sandboxes/abc/files", "/dashboard/index.html"} {
		w := get(t, a, p)
		if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("GET %s: %d %s", p, w.Code, w.Header().Get("Content-Type"))
		}
		body := w.Body.String()
		c := w.Header().Get("Content-Security-Policy")
		i := strings.Index(c, "'nonce-")
		if i < 0 || strings.Contains(body, nonceSlot) {
			t.Fatalf("GET %s: CSP %q, body %s", p, c, body)
		}
		nonce := c[i+7 : i+7+strings.Index(c[i+7:], "'")]
		if !strings.Contains(body, `nonce="`+nonce+`"`) {
			t.Errorf("GET %s: the page's nonce is not the CSP's %q: %s", p, nonce, body)
		}
		if nonces[nonce] {
			t.Errorf("nonce %q served twice", nonce)
		}
		nonces[nonce] = true
		for _, want := range []string{"script-src 'self';", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"} {
			if !strings.Contains(c, want) {
				t.Errorf("CSP %q lacks %q", c, want)
			}
		}
		if w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", p, w.Header())
		}
	}
	w := get(t, a, "/dashboard/assets/app-abc.js")
	if w.Code != 200 || !strings.Contains(w.Header().Get("Cache-Control"), "immutable") || !strings.Contains(w.Header().Get("Content-Type"), "javascript") || w.Body.String() != "console.log(1)" {
		t.Errorf("asset: %d %v %q", w.Code, w.Header(), w.Body)
	}
	for _, p := range []string{"/dashboard/assets/missing.js", "/dashboard/README.md", "/dashboard/.vite/manifest.json", "/dashboard/../etc/passwd.txt"} {
		if w := get(t, a, p); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d; want 404", p, w.Code)
		}
	}
}

func TestFilePath(t *testing.T) {
	for q, want := range map[string]string{"": "~", "/etc": "/etc", "notes/a.txt": "notes/a.txt", "~/x": "~/x", "/a/b..c": "/a/b..c"} {
		r := httptest.NewRequest("GET", "/x?path="+url.QueryEscape(q), nil)
		if got, err := filePath(r, true); err != nil || got != want {
			t.Errorf("path %q: %q, %v; want %q", q, got, err, want)
		}
	}
	for _, q := range []string{"../etc/passwd", "/home/user/../../etc", "a/..", "..", "a\x00b", strings.Repeat("a", maxPath+1)} {
		r := httptest.NewRequest("GET", "/x?path="+url.QueryEscape(q), nil)
		if _, err := filePath(r, true); !errdefsIs(err, errdefs.ErrInvalidArgument) {
			t.Errorf("path %q: %v; want invalid argument", q, err)
		}
	}
	r := httptest.NewRequest("GET", "/x", nil)
	if _, err := filePath(r, false); !errdefsIs(err, errdefs.ErrInvalidArgument) {
		t.Errorf("missing required path: %v", err)
	}
}

// TestHub: a change reaches the streams of its team only, and a stream
// that falls behind is told to start again from a snapshot.
func TestHub(t *testing.T) {
	h := NewHub()
	a, unsubA := h.subscribe("")
	b, unsubB := h.subscribe("team_b")
	defer unsubB()
	h.Stored(&store.Event{SandboxID: "s1", TeamID: store.DefaultTeamID})
	h.Stored(&store.Event{SandboxID: "s2", TeamID: "team_b"})
	h.Stored(nil)
	if got := <-a.ch; got != "s1" {
		t.Errorf("default team's stream got %q", got)
	}
	if got := <-b.ch; got != "s2" {
		t.Errorf("team_b's stream got %q", got)
	}
	select {
	case id := <-a.ch:
		t.Errorf("default team's stream got another team's %q", id)
	case <-time.After(10 * time.Millisecond):
	}
	for range subscriberBuffer + 1 {
		h.Stored(&store.Event{SandboxID: "s", TeamID: "team_b"})
	}
	select {
	case <-b.lost:
	default:
		t.Error("an overflowing stream was not told")
	}
	unsubA()
	h.Stored(&store.Event{SandboxID: "s3", TeamID: store.DefaultTeamID}) // no one to tell: must not block
}

func TestTermSize(t *testing.T) {
	if n, err := termSize("cols", "", 80); n != 80 || err != nil {
		t.Errorf("default: %d %v", n, err)
	}
	if n, err := termSize("cols", "132", 80); n != 132 || err != nil {
		t.Errorf("132: %d %v", n, err)
	}
	for _, v := range []string{"0", "-1", "x", "1001", "99999999999"} {
		if _, err := termSize("rows", v, 24); !errdefsIs(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: %v; want invalid argument", v, err)
		}
	}
}

func errdefsIs(err, class error) bool { return err != nil && errors.Is(err, class) }
