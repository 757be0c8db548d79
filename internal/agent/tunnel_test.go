package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/tunnel"
)

// echoServer echoes each connection until the client half-closes, then
// closes it.
func echoServer(t *testing.T, network, addr string) int {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func dialAgent(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", testAgent.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTunnel(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6 fallback", "tcp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := echoServer(t, tc.network, tc.addr)
			ctx := testContext(t)
			conn, err := tunnel.Dial(ctx, dialAgent(t), testToken, port)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("ping through the tunnel\n")
			if _, err := conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			// Half-close: the echo server sees EOF, and its reply still
			// comes back.
			if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(msg) {
				t.Fatalf("echo %q, want %q", got, msg)
			}
		})
	}
}

// TestTunnelEarlyBytes sends data right behind the upgrade request, before
// the agent has answered; none of it may be lost.
func TestTunnelEarlyBytes(t *testing.T) {
	port := echoServer(t, "tcp4", "127.0.0.1:0")
	c := dialAgent(t)
	fmt.Fprintf(c, "GET %s?port=%d HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s: %s\r\n\r\nearly", agentapi.TunnelPath, port, agentapi.TunnelProtocol, agentapi.AccessTokenHeader, testToken)
	c.(*net.UnixConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	const want = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: sbx-tunnel\r\n\r\nearly"
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestTunnelErrors(t *testing.T) {
	ctx := testContext(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	_, err = tunnel.Dial(ctx, dialAgent(t), testToken, closed)
	var te *tunnel.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusBadGateway || te.Message == "" {
		t.Fatalf("closed port: %v, want a 502 TunnelError", err)
	}
	_, err = tunnel.Dial(ctx, dialAgent(t), "wrong", closed)
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v, want 401", err)
	}
	if _, err := tunnel.Dial(ctx, dialAgent(t), testToken, 0); err == nil {
		t.Fatal("port 0 accepted")
	}

	hc := httpClient(t, "http1", testToken)
	for _, tc := range []struct {
		query   string
		upgrade bool
		want    int
	}{
		{"port=0", true, http.StatusBadRequest},
		{"port=65536", true, http.StatusBadRequest},
		{"port=x", true, http.StatusBadRequest},
		{fmt.Sprintf("port=%d", closed), false, http.StatusBadRequest},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+agentapi.TunnelPath+"?"+tc.query, nil)
		if tc.upgrade {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", agentapi.TunnelProtocol)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s upgrade=%v: %s, want %d", tc.query, tc.upgrade, res.Status, tc.want)
		}
	}
}

func TestDialTunnelContext(t *testing.T) {
	// An agent that never answers: the context bounds the handshake.
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tunnel.Dial(ctx, a, "t", 80); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
