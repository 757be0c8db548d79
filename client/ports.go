package client

import "strconv"

// TrafficTokenHeader carries a sandbox's traffic access token on requests to
// its ports when the sandbox was created with [CreateOptions.PrivateTraffic].
const TrafficTokenHeader = "E2b-Traffic-Access-Token"

// Host returns the host name under which port of the sandbox is reachable
// through the server, {port}-{sandboxID}.{domain}, as the e2b SDKs'
// getHost(port) does. Any TCP port a process in the sandbox listens on
// works, including one bound to the sandbox's 127.0.0.1 only.
func (s *Sandbox) Host(port int) string {
	return strconv.Itoa(port) + "-" + s.ID + "." + s.Domain
}

// URL returns the base URL of port of the sandbox: [Sandbox.Host] with the
// scheme the client reaches the server by (https when the server has TLS).
// The host name must resolve to the server; see the server's --domain.
func (s *Sandbox) URL(port int) string {
	scheme := "http"
	if s.c != nil && s.c.baseURL.Scheme == "https" {
		scheme = "https"
	}
	return scheme + "://" + s.Host(port)
}
