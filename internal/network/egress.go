package network

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/network/l7"
)

// peekTimeout is how long the proxy waits for a client's first bytes (an
// HTTP request line or a TLS ClientHello) before deciding on the address
// alone: protocols where the server speaks first (SSH, SMTP) send nothing
// until then.
const peekTimeout = 500 * time.Millisecond

// maxPeek bounds what the proxy reads before deciding.
const maxPeek = 16 << 10

// egressProxy is the transparent proxy of sandboxes' outbound traffic, for
// sandboxes whose egress policy names domains. nftables redirects their
// outbound TCP to it; it recovers the original destination
// (SO_ORIGINAL_DST), reads the HTTP Host or TLS SNI from the first bytes,
// decides with the sandbox's current policy, and splices the connection to
// the destination. (Inbound traffic to sandboxes is package proxy's.)
type egressProxy struct {
	n         *Network
	ln        *net.TCPListener
	port      uint16
	wg        sync.WaitGroup
	closeOnce sync.Once
	done      chan struct{}

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newEgressProxy(n *Network) (*egressProxy, error) {
	l, err := markedListen.Listen(context.Background(), "tcp4", ":0")
	if err != nil {
		return nil, fmt.Errorf("transparent proxy: %w", err)
	}
	ln := l.(*net.TCPListener)
	return &egressProxy{n: n, ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), done: make(chan struct{}), conns: map[net.Conn]struct{}{}}, nil
}

func (p *egressProxy) close() {
	p.closeOnce.Do(func() {
		close(p.done)
		p.ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	p.wg.Wait()
}

func (p *egressProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return false
	default:
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *egressProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// serve starts accepting connections in the background.
func (p *egressProxy) serve() {
	p.wg.Add(1)
	go p.accept()
}

func (p *egressProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
				continue
			}
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.handle(c)
		}()
	}
}

func (p *egressProxy) handle(c *net.TCPConn) {
	defer c.Close()
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	b := p.n.boxByAddr(src)
	if b == nil {
		return
	}
	dst, err := originalDst(c)
	if err != nil {
		p.n.log.Warn("proxy: original destination", "sandbox_id", b.id, "err", err)
		return
	}
	log := p.n.log.With("sandbox_id", b.id, "dst", dst.String())
	// Threat: the proxy dials from the host, so it must itself refuse
	// what the kernel rules refuse to sandboxes (the host's services,
	// other sandboxes, metadata).
	if p.n.globallyDenied(dst.Addr()) {
		log.Info("proxy: connection denied (server-wide)")
		reset(c)
		return
	}
	pol := p.n.policyOf(b)
	var head []byte
	name := ""
	if !allowedByCIDR(pol, dst) || !pol.rules.Empty() {
		head, name = peekName(c)
	}
	ctx, cancel := context.WithTimeout(p.n.dns.ctx, 10*time.Second) // ends with the server
	defer cancel()
	resolves := func(name string) bool {
		if p.n.resolvedFor(b, name, dst.Addr()) {
			return true
		}
		addrs, _, err := p.n.dns.lookupA(ctx, name)
		if err != nil {
			return false
		}
		for _, a := range addrs {
			if a == dst.Addr() {
				return true
			}
		}
		return false
	}
	// The policy as of now: a change made while we peeked applies.
	pol = p.n.policyOf(b)
	if !pol.verdict(dst.Addr(), dst.Port(), name, resolves, name == "" && p.n.resolvedAllowed(b, dst.Addr())) {
		log.Info("proxy: connection denied by policy", "name", name)
		reset(c)
		return
	}
	dial := func(ctx context.Context) (net.Conn, error) { return p.dial(ctx, pol, dst) }
	// Threat: a Host or SNI naming a rule's domain sent to another
	// address (the sandbox's own server) would be handed the secrets; a
	// rule applies only where its name really resolves to. Elsewhere the
	// connection goes on untouched.
	if headers, ok := pol.rules.Match(name); ok && b.ca != nil && (l7.IsTLS(head) || looksHTTP(head)) && resolves(name) {
		c.SetReadDeadline(time.Time{})
		// The upstream is tracked like the client, so that close ends a
		// relay waiting on either.
		var ups []net.Conn
		tracked := func(ctx context.Context) (net.Conn, error) {
			up, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			if !p.track(up) {
				up.Close()
				return nil, errors.New("the server is stopping")
			}
			ups = append(ups, up)
			return up, nil
		}
		// Cancelled with the server, not after the dial timeout: the
		// relay lasts as long as the connection.
		err := p.n.l7.Serve(p.n.dns.ctx, l7.Flow{Sandbox: b.id, Client: c, Head: head, Name: name, Headers: headers, CA: b.ca, Dial: tracked})
		for _, up := range ups {
			p.untrack(up)
			up.Close()
		}
		if err != nil {
			log.Info("proxy: intercepted connection ended", "name", name, "err", err)
		}
		return
	}
	up, err := dial(ctx)
	if err != nil {
		log.Debug("proxy: dial", "err", err)
		reset(c)
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	defer up.Close()
	c.SetReadDeadline(time.Time{})
	if len(head) > 0 {
		if _, err := up.Write(head); err != nil {
			return
		}
	}
	splice(c, up)
}

// dial connects to dst, already allowed: directly, or through the
// policy's SOCKS5 proxy. The proxy is given dst's address, not a name:
// Threat: a Host or SNI the sandbox wrote, resolved by the proxy, could
// lead anywhere the policy did not allow.
func (p *egressProxy) dial(ctx context.Context, pol *compiled, dst netip.AddrPort) (net.Conn, error) {
	if pol.socks == nil {
		var d net.Dialer
		return d.DialContext(ctx, "tcp4", dst.String())
	}
	host, port, _ := net.SplitHostPort(pol.socks.Address)
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil || len(addrs) == 0 {
		return nil, fmt.Errorf("egress proxy %s: %w", pol.socks.Address, err)
	}
	pn, _ := strconv.Atoi(port)
	pa := netip.AddrPortFrom(addrs[0].Unmap(), uint16(pn))
	// Threat: the host dials the proxy's address itself, so a sandbox's
	// owner could aim it at the host's own services or at other
	// sandboxes; the server-wide deny list applies to it too.
	if p.n.globallyDenied(pa.Addr()) {
		return nil, fmt.Errorf("egress proxy %s: address %s is denied", pol.socks.Address, pa.Addr())
	}
	return pol.socks.Dial(ctx, pa, dst, "")
}

// allowedByCIDR reports whether an allow CIDR covers dst (no name needed).
func allowedByCIDR(pol *compiled, dst netip.AddrPort) bool {
	for _, r := range pol.allowIP {
		if r.prefix.Contains(dst.Addr()) && (r.port == 0 || r.port == dst.Port()) {
			return true
		}
	}
	return false
}

// reset closes c with a RST, so that the client sees "connection refused"-
// like failure at once rather than an orderly close.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// splice copies both ways until both sides are done; Go's TCPConn ReadFrom
// uses splice(2), so bytes do not pass through user space.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// originalDst returns the destination a redirected connection was sent to.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var ap netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		// SO_ORIGINAL_DST fills a sockaddr_in; IPv6Mreq is a 20-byte
		// buffer of the right size to receive it.
		m, e := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if e != nil {
			serr = e
			return
		}
		raw := m.Multiaddr
		port := binary.BigEndian.Uint16(raw[2:4])
		ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{raw[4], raw[5], raw[6], raw[7]}), port)
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ap, serr
}

// peekName reads the client's first bytes (up to peekTimeout, maxPeek) and
// returns them with the name they carry: the SNI of a TLS ClientHello or
// the Host of an HTTP/1 request ("" when there is none).
func peekName(c *net.TCPConn) ([]byte, string) {
	deadline := time.Now().Add(peekTimeout)
	c.SetReadDeadline(deadline)
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for len(buf) < maxPeek {
		nr, err := c.Read(tmp)
		buf = append(buf, tmp[:nr]...)
		if name, done := parseName(buf); done {
			return buf, name
		}
		if err != nil {
			break
		}
	}
	name, _ := parseName(buf)
	return buf, name
}

// parseName extracts the name from the first bytes of a connection. done
// is false while more bytes could still change the answer.
func parseName(b []byte) (name string, done bool) {
	if len(b) == 0 {
		return "", false
	}
	if b[0] == 0x16 { // TLS handshake record
		return parseSNI(b)
	}
	if !looksHTTP(b) {
		return "", true
	}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return "", false
	}
	for _, line := range strings.Split(string(b[:end]), "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "host") {
			return normHost(strings.TrimSpace(v)), true
		}
	}
	return "", true
}

var httpMethods = []string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}

func looksHTTP(b []byte) bool {
	for _, m := range httpMethods {
		n := min(len(m), len(b))
		if string(b[:n]) == m[:n] {
			return true
		}
	}
	return false
}

// normHost lower-cases a Host value and strips its port and a trailing dot.
func normHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// parseSNI extracts server_name from a TLS ClientHello that may span
// several records.
func parseSNI(b []byte) (string, bool) {
	// Reassemble handshake bytes from consecutive handshake records.
	var hs []byte
	rest := b
	for len(rest) >= 5 && rest[0] == 0x16 {
		l := int(binary.BigEndian.Uint16(rest[3:5]))
		if len(rest) < 5+l {
			hs = append(hs, rest[5:]...)
			rest = nil
			break
		}
		hs = append(hs, rest[5:5+l]...)
		rest = rest[5+l:]
	}
	if len(hs) < 4 {
		return "", false
	}
	if hs[0] != 1 { // not a ClientHello
		return "", true
	}
	total := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
	if len(hs) < 4+total {
		if len(rest) > 0 {
			return "", true // another record type before the hello ended
		}
		return "", false
	}
	name, err := sniFromHello(hs[4 : 4+total])
	if err != nil {
		return "", true
	}
	return name, true
}

var errShort = errors.New("short ClientHello")

func sniFromHello(h []byte) (string, error) {
	// version(2) random(32)
	if len(h) < 34 {
		return "", errShort
	}
	h = h[34:]
	skip := func(lenBytes int) error {
		if len(h) < lenBytes {
			return errShort
		}
		l := 0
		for i := 0; i < lenBytes; i++ {
			l = l<<8 | int(h[i])
		}
		if len(h) < lenBytes+l {
			return errShort
		}
		h = h[lenBytes+l:]
		return nil
	}
	if err := skip(1); err != nil { // session id
		return "", err
	}
	if err := skip(2); err != nil { // cipher suites
		return "", err
	}
	if err := skip(1); err != nil { // compression methods
		return "", err
	}
	if len(h) < 2 {
		return "", nil // no extensions
	}
	ext := h[2:]
	if l := int(binary.BigEndian.Uint16(h)); l < len(ext) {
		ext = ext[:l]
	}
	for len(ext) >= 4 {
		typ := binary.BigEndian.Uint16(ext)
		l := int(binary.BigEndian.Uint16(ext[2:]))
		if len(ext) < 4+l {
			return "", errShort
		}
		data := ext[4 : 4+l]
		ext = ext[4+l:]
		if typ != 0 { // server_name
			continue
		}
		if len(data) < 2 {
			return "", errShort
		}
		list := data[2:]
		for len(list) >= 3 {
			nt := list[0]
			nl := int(binary.BigEndian.Uint16(list[1:]))
			if len(list) < 3+nl {
				return "", errShort
			}
			if nt == 0 {
				return normHost(string(list[3 : 3+nl])), nil
			}
			list = list[3+nl:]
		}
	}
	return "", nil
}
