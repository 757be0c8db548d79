package dashboard

import (
	"bytes"
	"embed"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errhttp"
)

// dist is the front end as scripts/build-dashboard.sh builds it. all:
// keeps files whose names start with "_" or "." (Vite makes some); the
// committed README.md keeps the pattern matching in a checkout that has
// not built it.
//
//go:embed all:dist
var dist embed.FS

// notBuilt is the answer of a server built without the front end.
const notBuilt = "the dashboard's assets are not built: run scripts/build-dashboard.sh"

// assets serves the embedded front end.
type assets struct {
	fs    fs.FS
	index []byte // nil: not built
}

// loadAssets reads the embedded build of fsys (dist/) and logs once when
// it is missing.
func loadAssets(fsys fs.FS, log *slog.Logger) *assets {
	sub, err := fs.Sub(fsys, "dist")
	if err != nil {
		sub = fsys
	}
	a := &assets{fs: sub}
	if b, err := fs.ReadFile(sub, "index.html"); err == nil {
		a.index = b
	} else {
		log.Warn(notBuilt)
	}
	return a
}

// ServeAssets serves GET /dashboard/...: files of the build by path,
// index.html for any path without an extension (the front end routes
// those itself). Without a build the pages answer 503 and files 404.
func (s *Server) ServeAssets(w http.ResponseWriter, r *http.Request) {
	s.assets.serve(w, r)
}

func (a *assets) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(path.Clean(r.URL.Path), "/dashboard")
	p = strings.TrimPrefix(p, "/")
	if p == "" || p == "index.html" || path.Ext(p) == "" {
		if a.index == nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(notBuilt + "\n"))
			return
		}
		a.serveIndex(w)
		return
	}
	if p == "README.md" || strings.HasPrefix(p, ".") || strings.Contains(p, "/.") {
		errhttp.WriteMessage(w, http.StatusNotFound, "not found")
		return
	}
	b, err := fs.ReadFile(a.fs, p)
	if err != nil {
		errhttp.WriteMessage(w, http.StatusNotFound, "not found")
		return
	}
	ct := mime.TypeByExtension(path.Ext(p))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	if strings.HasPrefix(p, "assets/") {
		// Vite names these by their content's hash.
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// serveIndex serves index.html with a fresh nonce, in the page and in its
// CSP.
func (a *assets) serveIndex(w http.ResponseWriter) {
	nonce := newNonce()
	setHeaders(w.Header(), nonce)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(bytes.ReplaceAll(a.index, []byte(nonceSlot), []byte(nonce)))
}
