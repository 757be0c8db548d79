package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Plain GETs on runc: large bodies through a large buffer
//
// A download through httputil.ReverseProxy is copied 256 KiB at a time with
// a flush per read. For the commonest case, a GET without a body from an
// HTTP/1.1 client (over TLS or not) to a port sbx reaches by TCP itself
// (runc; see [Sandboxes.PortDialer]), the proxy makes the upstream request
// itself on a connection it owns and sends a body of known length of at
// least largeBodyMin bytes through a 4 MiB buffer: one read of the
// sandbox's socket, one write to the client's, as much as each has at a
// time.
//
// That is faster than splicing (splice(2)) the body, for the same
// CPU in sbx: what the copy saves is the CPU of the other two, the server in
// the sandbox and the client (docs/benchmarks.md has the measurements). A
// spliced page stays in flight through both sockets until the client has
// acknowledged it, so the server writes into new pages and the client
// reads from memory no cache holds; a copy frees each socket's pages at
// once, and they are reused while hot. Splice remains for when every large
// buffer is in use: it needs no memory of sbx's.
//
// Everything else about the exchange is as ReverseProxy does it: hop-by-hop
// headers dropped both ways, X-Forwarded-For/-Host/-Proto set, the app sees
// the Host it was called by, other bodies streamed with a flush per read
// (server-sent events), trailers passed on, connections kept alive and
// pooled per port.

// largeBodyMin is the smallest body sent through a large buffer; smaller
// ones, and those of unknown length, are streamed as ReverseProxy does.
const largeBodyMin = 1 << 20

// largeBufferSize is the size of the large buffers; largeBuffersMax bounds
// how many exist at once (64 MiB), past which bodies are spliced.
const (
	largeBufferSize = 4 << 20
	largeBuffersMax = 16
)

// maxIdlePerPort bounds the idle upstream connections kept per port.
const maxIdlePerPort = 16

// upstream is a pooled HTTP/1.1 connection to a sandbox port.
type upstream struct {
	conn net.Conn
	br   *bufio.Reader
}

// directPool holds the idle connections of one backend, per port.
type directPool struct {
	mu   sync.Mutex
	idle map[int][]*upstream
}

func (p *directPool) get(port int) *upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.idle[port]
	if len(l) == 0 {
		return nil
	}
	u := l[len(l)-1]
	p.idle[port] = l[:len(l)-1]
	return u
}

func (p *directPool) put(port int, u *upstream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle == nil {
		p.idle = map[int][]*upstream{}
	}
	if len(p.idle[port]) >= maxIdlePerPort {
		u.conn.Close()
		return
	}
	p.idle[port] = append(p.idle[port], u)
}

func (p *directPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.idle {
		for _, u := range l {
			u.conn.Close()
		}
	}
	p.idle = nil
}

// takesDirect reports whether r takes the direct path.
func (b *backend) takesDirect(r *http.Request) bool {
	if pd, _ := b.portDialer(r.Context()); pd == nil {
		return false
	}
	return r.Method == http.MethodGet && r.ProtoMajor == 1 &&
		(r.Body == nil || r.Body == http.NoBody) && r.ContentLength == 0 &&
		r.Header.Get("Upgrade") == "" && len(r.TransferEncoding) == 0 && r.Header.Get("Expect") == ""
}

// serveDirect serves GET r for port on a connection of the proxy's own. It
// answers errors as the ReverseProxy's error handler does.
func (b *backend) serveDirect(w http.ResponseWriter, r *http.Request, port int, onErr func(http.ResponseWriter, *http.Request, error)) {
	ctx := r.Context()
	out := outgoing(r, port)
	var (
		u    *upstream
		resp *http.Response
		err  error
	)
	// A pooled connection may have been closed by the server meanwhile
	// (idle timeouts): a GET is idempotent, so try once more on a new one.
	for attempt := 0; attempt < 2; attempt++ {
		fresh := false
		if u = b.direct.get(port); u == nil {
			conn, derr := b.dialPort(ctx, port)
			if derr != nil {
				onErr(w, r, derr)
				return
			}
			u, fresh = &upstream{conn: conn, br: bufio.NewReaderSize(conn, 32<<10)}, true
		}
		if err = out.Write(u.conn); err == nil {
			resp, err = readResponse(u.br, out)
		}
		if err == nil {
			break
		}
		u.conn.Close()
		if fresh || ctx.Err() != nil {
			onErr(w, r, err)
			return
		}
	}
	// The client going away ends the exchange, streams included.
	stop := context.AfterFunc(ctx, func() { u.conn.Close() })
	defer stop()

	removeHopHeaders(resp.Header)
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		u.conn.Close()
		return
	}

	complete := false
	if n := resp.ContentLength; n >= largeBodyMin && len(resp.TransferEncoding) == 0 && resp.Body != http.NoBody {
		complete = b.sendBody(w, u, n)
	} else {
		complete = copyBody(w, rc, resp.Body, b.buffers)
		for k, v := range resp.Trailer {
			h[k] = v
		}
	}
	if !complete {
		u.conn.Close()
		if ctx.Err() == nil {
			// As ReverseProxy does: the client must see a broken
			// response, not a short one that looks whole.
			panic(http.ErrAbortHandler)
		}
		return
	}
	if resp.Close || !stop() {
		u.conn.Close()
		return
	}
	b.direct.put(port, u)
}

// sendBody sends the n bytes of body from u to w: through a large buffer
// when one is free, else with splice(2).
func (b *backend) sendBody(w http.ResponseWriter, u *upstream, n int64) bool {
	buf := b.large.get()
	if buf == nil {
		b.log.Debug("proxy: every large buffer in use; splicing the body", "sandbox_id", b.id, "bytes", n)
		return spliceBody(w, u, n)
	}
	defer b.large.put(buf)
	// u.br hands reads at least its own size straight to the socket
	// once it has given out what it holds.
	m, err := io.CopyBuffer(writerOnly{w}, readerOnly{io.LimitReader(u.br, n)}, buf)
	return err == nil && m == n
}

// spliceBody sends the n bytes of body from u to w: what u's reader already
// holds, then the rest straight from the socket.
func spliceBody(w http.ResponseWriter, u *upstream, n int64) bool {
	if k := u.br.Buffered(); k > 0 {
		if int64(k) > n {
			k = int(n)
		}
		p, _ := u.br.Peek(k)
		if _, err := w.Write(p); err != nil {
			return false
		}
		u.br.Discard(k)
		n -= int64(k)
	}
	// io.Copy uses the ResponseWriter's ReadFrom, which hands a
	// *net.TCPConn source under a LimitedReader to the client's
	// *net.TCPConn ReadFrom: splice(2).
	src := u.conn
	if tc, ok := src.(*net.TCPConn); ok {
		m, err := io.Copy(w, &io.LimitedReader{R: tc, N: n})
		return err == nil && m == n
	}
	m, err := io.Copy(w, io.LimitReader(src, n))
	return err == nil && m == n
}

// boundedPool is a bufferPool of which at most max buffers are in use at
// once.
type boundedPool struct {
	pool *bufferPool
	max  int32
	used atomic.Int32
}

func newBoundedPool(size, max int) *boundedPool {
	return &boundedPool{max: int32(max), pool: newBufferPool(size)}
}

// get returns a buffer, or nil if max are in use.
func (p *boundedPool) get() []byte {
	if p.used.Add(1) > p.max {
		p.used.Add(-1)
		return nil
	}
	return p.pool.Get()
}

// put gives back a buffer get returned.
func (p *boundedPool) put(b []byte) {
	p.pool.Put(b)
	p.used.Add(-1)
}

// copyBody streams body to w through a buffer of bufs, flushing after every
// read.
func copyBody(w http.ResponseWriter, rc *http.ResponseController, body io.Reader, bufs *bufferPool) bool {
	buf := bufs.Get()
	defer bufs.Put(buf)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return false
			}
			if rc.Flush() != nil {
				return false
			}
		}
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// readResponse reads the response to out, skipping informational (1xx)
// ones.
func readResponse(br *bufio.Reader, out *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, out)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// outgoing is the request sent upstream for r: ReverseProxy's rewrite
// (Host kept, X-Forwarded-* set, hop-by-hop headers removed).
func outgoing(r *http.Request, port int) *http.Request {
	out := r.Clone(r.Context())
	out.URL = &url.URL{Scheme: "http", Host: portHost(port), Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.Host = r.Host
	out.RequestURI = ""
	out.Body = nil
	out.ContentLength = 0
	out.Close = false
	removeHopHeaders(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // not Go's default
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := out.Header["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		out.Header.Set("X-Forwarded-For", ip)
	} else {
		out.Header.Del("X-Forwarded-For")
	}
	out.Header.Set("X-Forwarded-Host", r.Host)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	out.Header.Set("X-Forwarded-Proto", proto)
	return out
}

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}
