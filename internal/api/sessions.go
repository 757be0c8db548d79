package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// Dashboard sessions
//
// The dashboard (internal/dashboard) signs a browser in by exchanging an
// API key for a session cookie: the key is sent once and never kept by
// the page, so a script injected into it cannot read a credential (the
// cookie is HttpOnly) and another site cannot send it (SameSite=Strict,
// and the cross-origin check of ServeHTTP). A request that carries no key
// but a valid cookie acts as the session's key in every route. Because a
// browser attaches the cookie by itself, every call authenticated by it
// that may change state must also carry the session's CSRF token in
// X-CSRF-Token, which only the page that signed in has read.
//
// The cookie holds a random session id; the store keeps its SHA-256 hash,
// the key's id, the CSRF token and the expiry. Signing out, or revoking the
// key, deletes the session and cancels the context of every request it is
// serving (the dashboard's event stream and terminals), so they end at
// once on this node. On a fleet a session revoked on another node is
// refused at once on this one too (the store is shared), but a stream this
// node serves for it ends only when it is next checked: see
// [Sessions.Recheck].

// SessionCookie is the name of the dashboard's session cookie.
const SessionCookie = "sbx_session"

// SessionTTL is how long a dashboard session lasts.
const SessionTTL = 12 * time.Hour

// csrfHeader carries the session's CSRF token.
const csrfHeader = "X-CSRF-Token"

// Sessions keeps the dashboard's sessions and cancels the requests a
// revoked session is serving. Its methods may be called from many
// goroutines at once.
type Sessions struct {
	db   *store.DB
	keys *Keys

	mu   sync.Mutex
	open map[string]*openSession // by session hash
}

// openSession is what a session is serving now: the cancel functions of
// its requests.
type openSession struct {
	keyID   string
	next    int
	cancels map[int]context.CancelFunc
}

// NewSessions returns the sessions of db, whose keys are keys.
func NewSessions(db *store.DB, keys *Keys) *Sessions {
	return &Sessions{db: db, keys: keys, open: map[string]*openSession{}}
}

// session is an authenticated session, as a request carries it.
type session struct {
	rec *store.Session
	key *store.APIKey
}

type sessionKey struct{}

func sessionOf(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	return s
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Create makes a session for key and returns its id (the cookie's value).
func (ss *Sessions) Create(ctx context.Context, key *store.APIKey) (string, *store.Session, error) {
	id := randomToken()
	now := time.Now().UTC()
	rec := &store.Session{Hash: hashKey(id), KeyID: key.ID, CSRFToken: randomToken(), CreatedAt: now, ExpiresAt: now.Add(SessionTTL)}
	if err := ss.db.PutSession(ctx, rec); err != nil {
		return "", nil, err
	}
	return id, rec, nil
}

// Lookup returns the live session of id and its key. A session that
// expired, or whose key was revoked, is refused.
func (ss *Sessions) Lookup(ctx context.Context, id string) (*store.Session, *store.APIKey, error) {
	refused := errdefs.New(errdefs.ErrUnauthenticated, "invalid or expired session: sign in again")
	if id == "" || len(id) > 128 {
		return nil, nil, refused
	}
	rec, err := ss.db.GetSession(ctx, hashKey(id))
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil, refused
	}
	if err != nil {
		return nil, nil, err
	}
	if !time.Now().Before(rec.ExpiresAt) {
		return nil, nil, refused
	}
	key, ok := ss.keys.ByID(rec.KeyID)
	if !ok {
		return nil, nil, refused
	}
	return rec, key, nil
}

// track returns ctx, cancelled when session rec is revoked, and the
// function that forgets it (call it when the request ends).
func (ss *Sessions) track(ctx context.Context, rec *store.Session) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	ss.mu.Lock()
	o := ss.open[rec.Hash]
	if o == nil {
		o = &openSession{keyID: rec.KeyID, cancels: map[int]context.CancelFunc{}}
		ss.open[rec.Hash] = o
	}
	n := o.next
	o.next++
	o.cancels[n] = cancel
	ss.mu.Unlock()
	return ctx, func() {
		cancel()
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if o := ss.open[rec.Hash]; o != nil {
			delete(o.cancels, n)
			if len(o.cancels) == 0 {
				delete(ss.open, rec.Hash)
			}
		}
	}
}

// cancel ends the requests of the sessions of hashes.
func (ss *Sessions) cancel(hashes ...string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, h := range hashes {
		if o := ss.open[h]; o != nil {
			for _, c := range o.cancels {
				c()
			}
			delete(ss.open, h)
		}
	}
}

// Revoke deletes session rec and ends the requests it is serving.
func (ss *Sessions) Revoke(ctx context.Context, rec *store.Session) error {
	ss.cancel(rec.Hash)
	return ss.db.DeleteSession(ctx, rec.Hash)
}

// RevokeKey deletes the sessions of API key keyID and ends the requests
// they are serving.
func (ss *Sessions) RevokeKey(ctx context.Context, keyID string) error {
	hashes, err := ss.db.DeleteKeySessions(ctx, keyID)
	ss.mu.Lock()
	for h, o := range ss.open {
		if o.keyID == keyID {
			hashes = append(hashes, h)
		}
	}
	ss.mu.Unlock()
	ss.cancel(hashes...)
	return err
}

// Recheck ends the requests of open sessions that the store no longer
// holds or whose key is gone: those revoked by another node sharing the
// store. The server calls it periodically on a fleet.
func (ss *Sessions) Recheck(ctx context.Context) {
	ss.mu.Lock()
	hashes := make([]string, 0, len(ss.open))
	for h := range ss.open {
		hashes = append(hashes, h)
	}
	ss.mu.Unlock()
	var gone []string
	for _, h := range hashes {
		rec, err := ss.db.GetSession(ctx, h)
		if errors.Is(err, errdefs.ErrNotFound) {
			gone = append(gone, h)
			continue
		}
		if err != nil {
			continue
		}
		if _, ok := ss.keys.ByID(rec.KeyID); !ok || !time.Now().Before(rec.ExpiresAt) {
			gone = append(gone, h)
		}
	}
	ss.cancel(gone...)
}

// Prune deletes the sessions that have expired.
func (ss *Sessions) Prune(ctx context.Context) (int64, error) {
	return ss.db.PruneSessions(ctx, time.Now())
}

// cookieAuth authenticates r by its session cookie, for auth: the key, r
// with the session in its context (cancelled on revocation) and the
// function to call when the request ends. ok is false when r carries no
// cookie.
func (s *Server) cookieAuth(r *http.Request) (key *store.APIKey, out *http.Request, done func(), ok bool, err error) {
	c, cerr := r.Cookie(SessionCookie)
	if s.cfg.Sessions == nil || cerr != nil {
		return nil, r, func() {}, false, nil
	}
	rec, key, err := s.cfg.Sessions.Lookup(r.Context(), c.Value)
	if err != nil {
		return nil, r, func() {}, true, err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		// Threat: a page on another site making the browser send a
		// state-changing request with the cookie attached (CSRF). The
		// token is only readable by the page that signed in.
		if t := r.Header.Get(csrfHeader); t == "" || subtle.ConstantTimeCompare([]byte(t), []byte(rec.CSRFToken)) != 1 {
			return key, r, func() {}, true, errdefs.New(errdefs.ErrPermissionDenied, "missing or invalid CSRF token")
		}
	}
	ctx, done := s.cfg.Sessions.track(r.Context(), rec)
	ctx = context.WithValue(ctx, sessionKey{}, &session{rec: rec, key: key})
	return key, r.WithContext(ctx), done, true, nil
}

// sessionBody is the wire form of session ss.
func (s *Server) sessionBody(ctx context.Context, rec *store.Session, key *store.APIKey) wire.DashboardSession {
	role := "member"
	if key.Admin {
		role = "admin"
	}
	team := publicTeamID(key.Team)
	if t, err := s.keys.db.GetTeam(ctx, store.TeamOrDefault(key.Team)); err == nil {
		team = t.Name
	}
	return wire.DashboardSession{
		KeyID: key.ID, KeyName: key.Name, Team: team, Role: role,
		ServerAdmin: key.Admin && store.TeamOrDefault(key.Team) == store.DefaultTeamID,
		CSRFToken:   rec.CSRFToken, ExpiresAt: rec.ExpiresAt,
	}
}

// signIn serves POST /dashboard/api/session: an API key for a session
// cookie.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) error {
	if !s.ready.Load() {
		return errdefs.New(errdefs.ErrUnavailable, "sbx is starting")
	}
	if s.cfg.Sessions == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, "this server has no dashboard sessions")
	}
	var in wire.DashboardSignIn
	if err := decode(w, r, &in, false); err != nil {
		return err
	}
	key, ok := s.keys.Verify(in.APIKey)
	if !ok {
		return errdefs.New(errdefs.ErrUnauthenticated, "invalid API key")
	}
	if a := auditOf(r); a != nil {
		a.key = key
	}
	if err := s.limit(s.apiLimit, w, key.ID, "API calls"); err != nil {
		return err
	}
	id, rec, err := s.cfg.Sessions.Create(r.Context(), key)
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(SessionTTL / time.Second), Secure: r.TLS != nil,
	})
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.sessionBody(r.Context(), rec, key))
	return nil
}

// getSession serves GET /dashboard/api/session.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) error {
	ss := sessionOf(r)
	if ss == nil {
		return errdefs.New(errdefs.ErrUnauthenticated, "not signed in: this route needs the session cookie")
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.sessionBody(r.Context(), ss.rec, ss.key))
	return nil
}

// signOut serves DELETE /dashboard/api/session: the session is revoked
// and its streams end.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) error {
	ss := sessionOf(r)
	if ss == nil {
		return errdefs.New(errdefs.ErrUnauthenticated, "not signed in: this route needs the session cookie")
	}
	if err := s.cfg.Sessions.Revoke(context.WithoutCancel(r.Context()), ss.rec); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1, Secure: r.TLS != nil})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
