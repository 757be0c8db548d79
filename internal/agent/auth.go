package agent

import (
	"crypto/subtle"
	"errors"
	"net/http"

	"connectrpc.com/connect"

	"github.com/sbxdev/sbx/internal/agentapi"
)

// requireToken rejects requests without the configured access token. Every
// route but /health goes through it: the agent can start processes as root,
// so anything that reaches its socket without the token (another sandbox's
// traffic misrouted, a process inside the sandbox probing the socket if it
// were ever exposed) must be refused.
func (a *Agent) requireToken(next http.Handler) http.Handler {
	// Requests without Connect-Protocol-Version are plain HTTP (like /files)
	// and get the envd JSON error.
	errWriter := connect.NewErrorWriter(connect.WithRequireConnectProtocolHeader())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := []byte(a.config().AccessToken)
		got := r.Header.Get(agentapi.AccessTokenHeader)
		// Constant time, so the token cannot be guessed byte by byte from
		// response timing.
		if subtle.ConstantTimeCompare([]byte(got), want) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		msg := "invalid access token"
		if got == "" {
			msg = "missing access token (" + agentapi.AccessTokenHeader + " header)"
		}
		a.log.Debug("unauthenticated request", "path", r.URL.Path)
		if errWriter.IsSupported(r) {
			_ = errWriter.Write(w, r, connect.NewError(connect.CodeUnauthenticated, errors.New(msg)))
			return
		}
		writeJSONError(w, http.StatusUnauthorized, msg)
	})
}

// requestUser returns the user a request runs as: the name in its Basic
// authorization header (the e2b SDKs send "Basic base64(user:)"), else the
// configured default. The header only selects a user; the access token is
// what authenticates.
func (a *Agent) requestUser(h http.Header) string {
	r := http.Request{Header: h}
	if name, _, ok := r.BasicAuth(); ok && name != "" {
		return name
	}
	return a.config().DefaultUser
}
