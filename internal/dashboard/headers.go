package dashboard

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
)

// nonceSlot is what index.html says where the CSP nonce goes.
const nonceSlot = "__CSP_NONCE__"

// csp is the dashboard's Content-Security-Policy, with the nonce of the
// response for style elements (xterm.js writes one). Threat: anything a
// sandbox controls (file names, process output, metadata) reaching the page
// as HTML; with scripts only from the server's own files, an injected
// element can run nothing, load nothing from elsewhere, and send nothing
// anywhere.
func csp(nonce string) string {
	return "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-" + nonce + "'; " +
		"img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// newNonce returns a fresh random CSP nonce.
func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

// setHeaders sets the security headers of a dashboard response, with a
// CSP of nonce.
func setHeaders(h http.Header, nonce string) {
	h.Set("Content-Security-Policy", csp(nonce))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// Threat: a page on another site framing the dashboard to trick
	// clicks (clickjacking).
	h.Set("X-Frame-Options", "DENY")
}

// SetHeaders sets the security headers of every response under
// /dashboard/ (api.Dashboard); index.html gets its own nonce after.
func (s *Server) SetHeaders(h http.Header) { setHeaders(h, newNonce()) }
