package api

import (
	"context"
	"errors"
	"net/http"
	"sync"
)

// ErrRevoked is the cause of the context of a request whose credential was
// revoked while it was open (see [Revocations]).
var ErrRevoked = errors.New("the credential this request was made with was revoked")

// Revocations keeps the open long-lived requests of each credential (an
// API key's id; a session's, for the dashboard) so that revoking it ends
// them at once: a key that leaked must not keep the command streams, PTYs,
// watches and proxied WebSockets it opened before it was revoked.
//
// Track before serving such a request and call the done function it
// returns when the request ends; Revoke cancels the contexts of every
// request tracked under the id. Its methods are safe for concurrent use.
type Revocations struct {
	mu   sync.Mutex
	open map[string]map[*tracked]struct{}
}

type tracked struct{ cancel context.CancelCauseFunc }

// NewRevocations returns an empty registry.
func NewRevocations() *Revocations {
	return &Revocations{open: map[string]map[*tracked]struct{}{}}
}

// Track registers a request made with credential id and returns a context
// derived from parent that Revoke(id) cancels (with cause ErrRevoked),
// and the function to call when the request is over. done must be called;
// it is safe to call more than once.
func (v *Revocations) Track(parent context.Context, id string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	t := &tracked{cancel: cancel}
	v.mu.Lock()
	set := v.open[id]
	if set == nil {
		set = map[*tracked]struct{}{}
		v.open[id] = set
	}
	set[t] = struct{}{}
	v.mu.Unlock()
	return ctx, func() {
		v.mu.Lock()
		if set := v.open[id]; set != nil {
			delete(set, t)
			if len(set) == 0 {
				delete(v.open, id)
			}
		}
		v.mu.Unlock()
		cancel(context.Canceled)
	}
}

// Revoke cancels every request tracked under credential id and returns
// how many there were.
func (v *Revocations) Revoke(id string) int {
	v.mu.Lock()
	set := v.open[id]
	delete(v.open, id)
	v.mu.Unlock()
	for t := range set {
		t.cancel(ErrRevoked)
	}
	return len(set)
}

// Open returns how many requests are tracked under credential id.
func (v *Revocations) Open(id string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.open[id])
}

// tokenHolders remembers, per sandbox, the keys its envd access token was
// handed to (create, connect, resume, fork, get). Data-plane requests
// carry that token, not a key; so that revoking a key also ends the
// command streams, PTYs and watches opened with what it was given, each
// data-plane request is tracked under every key that holds its sandbox's
// token. The token itself stays valid: it is the sandbox's own
// credential, and killing the sandbox revokes it. The record is this
// server's memory: a restart forgets it, and so do a sandbox's kill.
type tokenHolders struct {
	mu   sync.Mutex
	keys map[string]map[string]struct{} // sandbox id → key ids
}

func (h *tokenHolders) add(sandboxID, keyID string) {
	if sandboxID == "" || keyID == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.keys == nil {
		h.keys = map[string]map[string]struct{}{}
	}
	set := h.keys[sandboxID]
	if set == nil {
		set = map[string]struct{}{}
		h.keys[sandboxID] = set
	}
	set[keyID] = struct{}{}
}

func (h *tokenHolders) of(sandboxID string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.keys[sandboxID]))
	for k := range h.keys[sandboxID] {
		out = append(out, k)
	}
	return out
}

func (h *tokenHolders) forget(sandboxID string) {
	h.mu.Lock()
	delete(h.keys, sandboxID)
	h.mu.Unlock()
}

// handedToken notes that r's key was given sandbox id's envd token.
func (s *Server) handedToken(r *http.Request, id string) {
	if k := keyOf(r); k != nil {
		s.holders.add(id, k.ID)
	}
}

// TrackDataPlane returns r with a context that ends when a key holding
// sandbox id's envd token is revoked, and the function to call when r
// has been served (internal/server calls it around the proxy).
func (s *Server) TrackDataPlane(r *http.Request, id string) (*http.Request, func()) {
	keys := s.holders.of(id)
	if len(keys) == 0 {
		return r, func() {}
	}
	ctx := r.Context()
	dones := make([]func(), 0, len(keys))
	for _, k := range keys {
		var done func()
		ctx, done = s.keys.Revocations().Track(ctx, k)
		dones = append(dones, done)
	}
	return r.WithContext(ctx), func() {
		for _, done := range dones {
			done()
		}
	}
}
