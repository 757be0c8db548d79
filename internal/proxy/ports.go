package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/tunnel"
)

// How the proxy reaches a port inside a sandbox
//
// Connections to a sandbox port go to the port on the sandbox's loopback, so
// services bound to 127.0.0.1 only are reachable too. Where the sandbox's
// runtime runs it on the host kernel's network stack (runc), sbx opens them
// itself from inside the sandbox's network namespace ([Sandboxes.PortDialer]):
// one loopback TCP connection, as a client in the sandbox would make.
// Otherwise (gVisor has a network stack of its own) each is a tunnel through
// the sandbox's agent (package tunnel), which dials the port from inside.
// Connections are pooled per sandbox and port, so a request normally reuses
// one already open.
//
// Requests that reach sbx over HTTP/1.1 go to the port over HTTP/1.1
// (WebSocket upgrades included). Requests that reach sbx over HTTP/2 (h2c,
// or h2 over TLS) go to the port over HTTP/2 when the server on it speaks
// h2c, which the proxy learns by probing the port once (see speaksH2C), and
// over HTTP/1.1 otherwise. gRPC servers in a sandbox therefore work end to
// end, with streaming and trailers, and plain HTTP/1.1 servers serve HTTP/2
// clients.
//
// Ports a sandbox lists as speaking TLS (Sandbox.HTTPSPorts, E2B's
// httpsPorts) are spoken to over TLS instead, without verifying the
// certificate: HTTP/2 clients over h2 where the server offers it by ALPN,
// HTTP/1.1 clients (and their upgrades) over HTTP/1.1; see tlsTransports.
// A sandbox's MaskRequestHost replaces the Host of requests to its ports.

// portHost is the URL host the proxy's transports use for a sandbox port; it
// keys their connection pools, and the dialler reads the port back from it.
func portHost(port int) string { return "port-" + strconv.Itoa(port) }

// hostPort reads the port back from a transport's dial address
// ("port-N:80").
func hostPort(addr string) (int, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	n, ok := strings.CutPrefix(host, "port-")
	if !ok {
		return 0, fmt.Errorf("proxy: unexpected dial address %q", addr)
	}
	return strconv.Atoi(n)
}

// dialPort opens a connection to port on the sandbox's loopback.
func (b *backend) dialPort(ctx context.Context, port int) (net.Conn, error) {
	pd, err := b.portDialer(ctx)
	if err != nil {
		return nil, err
	}
	if pd != nil {
		return pd.DialPort(ctx, port)
	}
	conn, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	tc, err := tunnel.Dial(ctx, conn, b.token, port)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// portTransports returns the HTTP/1.1 and the HTTP/2 (h2c, prior knowledge)
// transports to the sandbox's ports.
func (b *backend) portTransports() (h1, h2 *http.Transport) {
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		port, err := hostPort(addr)
		if err != nil {
			return nil, err
		}
		return b.dialPort(ctx, port)
	}
	h1 = &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		// Large bodies (downloads from a sandbox) move in fewer reads.
		ReadBufferSize:  64 << 10,
		WriteBufferSize: 64 << 10,
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2 = &http.Transport{
		DialContext:        dial,
		Protocols:          &protos,
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			// Room for a fast stream and many concurrent ones on the
			// one connection per port.
			MaxReceiveBufferPerConnection: 16 << 20,
			MaxReceiveBufferPerStream:     4 << 20,
			MaxReadFrameSize:              1 << 20,
		},
	}
	return h1, h2
}

// tlsTransports returns the transports to ports whose servers speak TLS
// (Sandbox.HTTPSPorts): one offering HTTP/2 and HTTP/1.1 by ALPN, for
// HTTP/2 clients, and one offering HTTP/1.1 alone, for HTTP/1.1 clients and
// their upgrades (WebSocket), which HTTP/2 does not carry. Certificates are
// not verified: the server is the sandbox's own, reached on its loopback,
// usually self-signed.
func (b *backend) tlsTransports() (mixed, h1 *http.Transport) {
	dial := func(protos ...string) func(ctx context.Context, _, addr string) (net.Conn, error) {
		return func(ctx context.Context, _, addr string) (net.Conn, error) {
			port, err := hostPort(addr)
			if err != nil {
				return nil, err
			}
			raw, err := b.dialPort(ctx, port)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, &tls.Config{
				// Threat: none here; the proxy vouches for nothing
				// (the sandbox is the party the client reaches) and the
				// hop never leaves the host.
				InsecureSkipVerify: true,
				NextProtos:         protos,
				ServerName:         "localhost",
			})
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, fmt.Errorf("TLS to sandbox port %d: %w", port, err)
			}
			return tc, nil
		}
	}
	var both, one http.Protocols
	both.SetHTTP1(true)
	both.SetHTTP2(true)
	one.SetHTTP1(true)
	mixed = &http.Transport{
		DialTLSContext:      dial("h2", "http/1.1"),
		Protocols:           &both,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	h1 = &http.Transport{
		DialTLSContext:      dial("http/1.1"),
		Protocols:           &one,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return mixed, h1
}

// portProto is what the proxy learnt of a port: whether its server speaks
// h2c, and until when that answer is trusted.
type portProto struct {
	h2    bool
	until time.Time
}

// How long probe results are kept. A port found to speak h2c stays so until
// a request over HTTP/2 to it fails; one that does not is probed again after
// noH2CRetry, in case another server has taken it since.
const (
	noH2CRetry   = 30 * time.Second
	probeTimeout = 2 * time.Second
)

// speaksH2C reports whether the server on port speaks HTTP/2 without TLS,
// probing it on first use. The probe opens a tunnel, sends the HTTP/2 client
// preface and an empty SETTINGS frame, and reads the first frame header of
// the answer: an HTTP/2 server answers with its SETTINGS; an HTTP/1.x one
// with a status line (or it closes the connection, or says nothing before
// the probe's deadline).
func (b *backend) speaksH2C(ctx context.Context, port int) bool {
	b.protoMu.Lock()
	pp, ok := b.protos[port]
	b.protoMu.Unlock()
	if ok && (pp.h2 || time.Now().Before(pp.until)) {
		return pp.h2
	}
	h2 := b.probeH2C(ctx, port)
	b.protoMu.Lock()
	b.protos[port] = portProto{h2: h2, until: time.Now().Add(noH2CRetry)}
	b.protoMu.Unlock()
	return h2
}

// forgetProto drops what was learnt of port.
func (b *backend) forgetProto(port int) {
	b.protoMu.Lock()
	delete(b.protos, port)
	b.protoMu.Unlock()
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113 §3.4)
// followed by an empty SETTINGS frame.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00")

func (b *backend) probeH2C(ctx context.Context, port int) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := b.dialPort(ctx, port)
	if err != nil {
		return false // the request itself will report why
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	if _, err := conn.Write(h2Preface); err != nil {
		return false
	}
	var hdr [9]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return false
	}
	// A frame header: 24-bit length, type (4: SETTINGS), flags, and a
	// 31-bit stream id that is 0 for SETTINGS.
	return hdr[3] == 0x4 && bytes.Equal(hdr[5:9], []byte{0, 0, 0, 0})
}

// copyBufferSize is the size of the copy buffers of the proxy's response
// bodies (Proxy.buffers): larger than ReverseProxy's default 32 KiB so that
// bulk downloads take fewer writes. They are pooled so requests allocate
// none.
const copyBufferSize = 256 << 10

// newBufferPool returns a pool of buffers of size bytes.
func newBufferPool(size int) *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, size); return &b }}}
}

type bufferPool struct{ p sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.p.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.p.Put(&b) }
