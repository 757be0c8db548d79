package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestTLS runs sbx serve with a wildcard certificate for *.sbx.test from a
// CA the test makes: the API, the SDK's data plane and preview URLs are
// served over HTTPS (HTTP/2 by ALPN, HTTP/1.1 and WebSockets too), a client
// that does not trust the CA is refused, and a renewed certificate is
// served without a restart.
func TestTLS(t *testing.T) {
	const domain = "sbx.test"
	ca := harness.NewCA(t, "*."+domain, domain, "127.0.0.1")
	srv := harness.StartTLS(t, ca, "--domain", domain)
	ctx := ctxFor(t, 2*time.Minute)

	// The control plane and the SDK's data plane (commands, files).
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Domain != domain || sb.Host(3000) != "3000-"+sb.ID+"."+domain || sb.URL(3000) != "https://3000-"+sb.ID+"."+domain {
		t.Fatalf("domain %q host %q url %q", sb.Domain, sb.Host(3000), sb.URL(3000))
	}
	startPreviewServers(t, ctx, sb, "127.0.0.1 3000")

	// *.sbx.test resolves to the server, as a wildcard DNS record would
	// make it; the port is the server's (a real deployment listens on 443).
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Addr)
	}
	h2 := &http.Client{Transport: &http.Transport{DialContext: dial, TLSClientConfig: ca.TLSConfig(), ForceAttemptHTTP2: true}}
	h1 := &http.Client{Transport: &http.Transport{DialContext: dial, TLSClientConfig: ca.TLSConfig(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	for _, tc := range []struct {
		name  string
		c     *http.Client
		proto string
	}{{"HTTP/2", h2, "HTTP/2.0"}, {"HTTP/1.1", h1, "HTTP/1.1"}} {
		t.Run("preview URL over "+tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, "GET", sb.URL(3000)+"/hello", nil)
			resp, err := tc.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != 200 || resp.Proto != tc.proto || resp.TLS == nil ||
				!strings.Contains(body, "host="+sb.Host(3000)+" ") || !strings.Contains(body, "xfp=https") {
				t.Fatalf("%s %s %q", resp.Proto, resp.Status, body)
			}
			// A large body (over HTTP/1.1 on runc: sbx's own
			// connection and large buffer) arrives whole.
			const n = 5<<20 + 3
			req, _ = http.NewRequestWithContext(ctx, "GET", sb.URL(3000)+fmt.Sprintf("/bytes?n=%d", n), nil)
			if resp, err = tc.c.Do(req); err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, resp); resp.StatusCode != 200 || resp.Proto != tc.proto || len(body) != n || strings.Trim(body, "x") != "" {
				t.Fatalf("%s %s: %d bytes, want %d x's", resp.Proto, resp.Status, len(body), n)
			}
		})
	}
	t.Run("SSE over HTTP/2 with TLS", func(t *testing.T) {
		testSSE(t, ctx, sb.URL(3000), sb, routes[0], h2)
	})
	t.Run("websocket over TLS", func(t *testing.T) {
		conn, err := tls.Dial("tcp", srv.Addr, &tls.Config{RootCAs: ca.Pool, ServerName: sb.Host(3000), NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		testWebSocketOn(t, conn, sb.URL(3000), sb, routes[0])
	})
	t.Run("a client that does not trust the CA", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{DialContext: dial}}
		_, err := c.Get(sb.URL(3000) + "/hello")
		var ue x509.UnknownAuthorityError
		if !errors.As(err, &ue) {
			t.Fatalf("err %v, want an unknown authority", err)
		}
	})
	t.Run("plain HTTP is refused", func(t *testing.T) {
		resp, err := http.Get("http://" + srv.Addr + "/health")
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s %q", resp.Status, body)
		}
	})
	t.Run("a renewed certificate is served without a restart", func(t *testing.T) {
		renewed := ca.Issue(t, "*."+domain, domain, "127.0.0.1")
		conn, err := tls.Dial("tcp", srv.Addr, &tls.Config{RootCAs: ca.Pool, ServerName: sb.Host(8080)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if got := conn.ConnectionState().PeerCertificates[0]; got.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
			t.Fatalf("served serial %v, want the renewed %v", got.SerialNumber, renewed.SerialNumber)
		}
		// And the server keeps working with it.
		if _, err := srv.Client.ListSandboxes(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})
}
