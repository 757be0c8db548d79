package api

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/sbxdev/sbx/internal/store"
)

// auditInfo collects, while a request is served, what its audit record
// says: the key (auth), the route and object (wrap, or the handler for
// an object it creates).
type auditInfo struct {
	key     *store.APIKey
	pattern string
	object  string
}

type auditKey struct{}

func auditOf(r *http.Request) *auditInfo {
	a, _ := r.Context().Value(auditKey{}).(*auditInfo)
	return a
}

// auditObject names the object a request made (a new sandbox's id, say).
func auditObject(r *http.Request, id string) {
	if a := auditOf(r); a != nil {
		a.object = id
	}
}

// noteRoute records the route r matched and the object its path names.
func noteRoute(r *http.Request) {
	a := auditOf(r)
	if a == nil {
		return
	}
	a.pattern = r.Pattern
	for _, name := range []string{"id", "sandboxID", "webhookID", "name", "buildID", "templateID", "alias"} {
		if v := r.PathValue(name); v != "" {
			a.object = v
			return
		}
	}
}

// statusWriter remembers the status a handler answered. It passes Flush
// on and unwraps for http.ResponseController (streams, hijacks).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// audited reports whether a request is recorded: every call that may
// change state (any method but GET, HEAD and OPTIONS) to a route, and
// every authentication or permission failure.
func audited(method string, a *auditInfo, status int) bool {
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		return true
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return a.pattern != "" && a.pattern != "/"
}

// audit stores the audit record of request r, answered with status.
func (s *Server) audit(r *http.Request, a *auditInfo, status int) {
	if status == 0 {
		status = http.StatusOK
	}
	if s.cfg.Events == nil || !audited(r.Method, a, status) {
		return
	}
	remote := r.RemoteAddr
	if h, _, err := net.SplitHostPort(remote); err == nil {
		remote = h
	}
	rec := &store.AuditRecord{
		ID: uuid.NewString(), At: time.Now().UTC(), TeamID: store.DefaultTeamID,
		Method: r.Method, Route: a.pattern, ObjectID: a.object, Status: status, Remote: remote,
	}
	if rec.Route == "" || rec.Route == "/" {
		rec.Route = r.Method + " " + truncate(r.URL.Path, 256) // no route matched
	}
	if len(rec.ObjectID) > 256 {
		rec.ObjectID = rec.ObjectID[:256]
	}
	if a.key != nil {
		rec.KeyID, rec.KeyName, rec.Admin = a.key.ID, a.key.Name, a.key.Admin
		rec.TeamID = store.TeamOrDefault(a.key.Team)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := s.cfg.Events.PutAudit(ctx, rec); err != nil {
		s.log.Error("store audit record", "route", rec.Route, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
