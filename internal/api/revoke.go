package api

import (
	"context"
	"errors"
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
