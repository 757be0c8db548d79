package e2e

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestIngressOptions: E2B's ingress options through sbx's real port proxy.
// maskRequestHost is the Host the sandbox's servers see (${PORT} filled
// in); httpsPorts are reached over TLS (a certificate nobody trusts, as a
// self-signed one), HTTP/1.1 and HTTP/2 by ALPN, WebSocket too; a port not
// listed is plain HTTP as before. The options are in the details and
// survive a pause and resume, a fork and a restart of sbx.
func TestIngressOptions(t *testing.T) {
	srv := harness.Start(t, "--internet=false")
	ctx := ctxFor(t, 4*time.Minute)
	ca := harness.NewCA(t, "localhost")
	const mask = "${PORT}-masked.example.test"
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{MaskRequestHost: mask, HTTPSPorts: []int{8443, 8443, 7443}})
	if err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{ca.CertFile: "/tmp/tls-cert.pem", ca.KeyFile: "/tmp/tls-key.pem"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sb.WriteFile(ctx, dst, bytes.NewReader(b), nil); err != nil {
			t.Fatal(err)
		}
	}
	start := func() {
		startPreviewServers(t, ctx, sb, "127.0.0.1 8080", "127.0.0.1 8443 tls", "127.0.0.1 9443 tls")
	}
	start()
	h1 := &http.Client{Timeout: 30 * time.Second}
	get := func(hc *http.Client, r route, port int) (int, string) {
		t.Helper()
		resp, err := hc.Do(newRequest(t, ctx, "GET", srv.URL+"/hello", r, sb, port))
		if err != nil {
			t.Fatalf("port %d by %s: %v", port, r.name, err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	check := func(stage string) {
		t.Helper()
		for _, r := range routes {
			// Plain HTTP, masked.
			if code, body := get(h1, r, 8080); code != 200 || !strings.Contains(body, "proto=1.1 host=8080-masked.example.test path=/hello") {
				t.Errorf("%s, %s, port 8080: %d %q; want the masked host", stage, r.name, code, body)
			}
			// TLS to the sandbox, HTTP/1.1 from the client.
			if code, body := get(h1, r, 8443); code != 200 || !strings.Contains(body, "proto=1.1 host=8443-masked.example.test") || !strings.HasSuffix(body, "tls=true") {
				t.Errorf("%s, %s, port 8443 over HTTP/1.1: %d %q; want TLS to the sandbox's server", stage, r.name, code, body)
			}
			// HTTP/2 from the client (h2c to sbx), h2 over TLS to the sandbox.
			if code, body := get(h2cClient(), r, 8443); code != 200 || body != "proto=2.0 host=8443-masked.example.test path=/hello tls=true" {
				t.Errorf("%s, %s, port 8443 over HTTP/2: %d %q; want HTTP/2 by ALPN to the sandbox", stage, r.name, code, body)
			}
			// A TLS port not listed is spoken to in plain HTTP, as
			// without the option: the server refuses it.
			if code, body := get(h1, r, 9443); code != 502 {
				t.Errorf("%s, %s, unlisted TLS port 9443: %d %q; want 502", stage, r.name, code, body)
			}
			conn, err := net.DialTimeout("tcp", srv.Addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			testWebSocketPort(t, conn, "http://"+srv.Addr, sb, r, 8443)
		}
		info, err := srv.Client.GetSandbox(ctx, sb.ID)
		if err != nil || info.Network == nil || info.Network.MaskRequestHost != mask || !slices.Equal(info.Network.HTTPSPorts, []int{7443, 8443}) {
			t.Fatalf("%s: details %+v %v; want the mask and ports [7443 8443]", stage, info.Network, err)
		}
	}
	check("created")
	// The envd port keeps the Host it was sent (the SDK's own calls).
	if res := mustRun(t, ctx, sb, "echo ok", nil); res.Stdout != "ok\n" {
		t.Fatalf("a command: %q", res.Stdout)
	}

	if err := sb.Pause(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.Resume(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	// A resume that rebooted the sandbox lost its servers; one that
	// restored them keeps them.
	if res := mustRun(t, ctx, sb, "pgrep -fc preview-server.js || true", nil); strings.TrimSpace(res.Stdout) != "3" {
		start()
	}
	check("resumed")

	forks, err := sb.Fork(ctx, 1, 0)
	if err != nil || len(forks) != 1 || forks[0].Err != nil {
		t.Fatalf("fork: %v %+v", err, forks)
	}
	info, err := srv.Client.GetSandbox(ctx, forks[0].Sandbox.ID)
	if err != nil || info.Network == nil || info.Network.MaskRequestHost != mask || !slices.Equal(info.Network.HTTPSPorts, []int{7443, 8443}) {
		t.Fatalf("fork's details %+v %v; want its source's ingress options", info.Network, err)
	}

	// A restart of sbx reads them from the sandbox's record.
	srv.Restart()
	check("after a restart")
}
