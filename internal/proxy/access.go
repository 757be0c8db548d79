package proxy

import (
	"crypto/subtle"
	"net/http"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TrafficTokenHeader carries a sandbox's traffic access token on requests to
// its ports, as E2B's proxy reads it.
const TrafficTokenHeader = "E2b-Traffic-Access-Token"

// checkTraffic authorises a proxied request to a port of a sandbox whose
// traffic token is want ("" when its ports are public).
//
// Threat: anyone who learns or guesses a private sandbox's host name (they
// are predictable from its id, which is not a secret: it appears in URLs,
// logs and listings) reaching the services running in it. The token is
// compared in constant time so response timing does not reveal how much of
// a guess matched.
func checkTraffic(r *http.Request, want string) error {
	if want == "" {
		return nil
	}
	got := r.Header.Get(TrafficTokenHeader)
	if got == "" {
		return errdefs.New(errdefs.ErrPermissionDenied, "this sandbox's ports are private: send its traffic access token in the %s header", TrafficTokenHeader)
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errdefs.New(errdefs.ErrPermissionDenied, "invalid traffic access token")
	}
	return nil
}
