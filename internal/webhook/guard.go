package webhook

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// refused are the ranges a webhook may not reach unless --webhook-allow
// lets them through, each with why. A webhook URL is chosen by any API
// caller, and the server that sends to it sits inside the operator's
// network: without this, a caller could make sbx POST to its own admin
// API, to the cloud metadata service (credentials), to sandboxes, or to
// any service on the host's private networks, and read a little of each
// answer through the deliveries' errors.
var refused = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address"},
	{netip.MustParsePrefix("10.0.0.0/8"), "a private address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (carrier-grade NAT) address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address (cloud metadata lives there)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "a private address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
	{netip.MustParsePrefix("192.168.0.0/16"), "a private address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("224.0.0.0/3"), "a multicast or reserved address"},
	{netip.MustParsePrefix("::/128"), "an unspecified address"},
	{netip.MustParsePrefix("::1/128"), "a loopback address"},
	{netip.MustParsePrefix("64:ff9b::/96"), "a NAT64 address (it reaches IPv4 inside)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a NAT64 address (it reaches IPv4 inside)"},
	// fd00:ec2::254, the EC2 metadata service over IPv6, is in fc00::/7.
	{netip.MustParsePrefix("fc00::/7"), "a private (unique local) address"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
}

// Guard decides which addresses webhooks may be sent to. It is checked
// when a webhook is registered (a URL whose host is an address) and again
// on every connection a delivery dials (a name is resolved only then, so
// a name that resolves to a refused address, or is re-pointed at one
// after registration, is refused too). It is safe for concurrent use.
type Guard struct {
	allow []netip.Prefix
	deny  []netip.Prefix
	// hostAddrs lists the host's own addresses; net.InterfaceAddrs when
	// nil.
	hostAddrs func() []netip.Addr

	mu   sync.Mutex
	self netip.AddrPort // sbx's listen address, once known
}

// NewGuard returns a guard that lets through the addresses in allow
// (--webhook-allow) and refuses those in deny (the sandboxes' subnet, the
// egress deny list) besides the built-in ranges and the host's own
// addresses.
func NewGuard(allow, deny []netip.Prefix) *Guard {
	return &Guard{allow: allow, deny: deny}
}

// SetSelf records sbx's listen address (host:port), which no webhook may
// point at, allowed or not.
func (g *Guard) SetSelf(addr string) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return
	}
	g.mu.Lock()
	g.self = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	g.mu.Unlock()
}

func (g *Guard) host() []netip.Addr {
	if g.hostAddrs != nil {
		return g.hostAddrs()
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// Check returns nil when a webhook may be sent to ap, or an error that
// says why not.
func (g *Guard) Check(ap netip.AddrPort) error {
	ip := ap.Addr().Unmap()
	g.mu.Lock()
	self := g.self
	g.mu.Unlock()
	if self.IsValid() && ap.Port() == self.Port() {
		// sbx itself: its own API, whatever address reaches it.
		if ip == self.Addr() || (self.Addr().IsUnspecified() && (ip.IsLoopback() || g.isHost(ip))) {
			return fmt.Errorf("%s is sbx's own listen address", ap)
		}
	}
	for _, p := range g.allow {
		if p.Contains(ip) {
			return nil
		}
	}
	for _, p := range g.deny {
		if p.Contains(ip) {
			return fmt.Errorf("%s is a sandbox or egress-denied address", ip)
		}
	}
	for _, r := range refused {
		if r.p.Contains(ip) {
			return fmt.Errorf("%s is %s", ip, r.why)
		}
	}
	if g.isHost(ip) {
		return fmt.Errorf("%s is one of this host's addresses", ip)
	}
	return nil
}

func (g *Guard) isHost(ip netip.Addr) bool {
	for _, h := range g.host() {
		if h == ip {
			return true
		}
	}
	return false
}

// CheckURL validates a webhook URL as registered: http or https, a host,
// at most 2048 bytes, and when the host is an address, one Check lets
// through. Refusals are errdefs.ErrInvalidArgument.
func (g *Guard) CheckURL(raw string) error {
	if len(raw) > 2048 {
		return errdefs.New(errdefs.ErrInvalidArgument, "url: at most 2048 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "url: not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errdefs.New(errdefs.ErrInvalidArgument, "url: the scheme must be http or https")
	}
	if u.Hostname() == "" || u.Opaque != "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "url: a host is required")
	}
	if u.User != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "url: credentials in the URL are not allowed; sign deliveries with signatureSecret")
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return errdefs.New(errdefs.ErrInvalidArgument, "url: invalid port %q", p)
		}
		port = n
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return nil // a name: checked on every dial
	}
	if err := g.Check(netip.AddrPortFrom(ip, uint16(port))); err != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "url: refused: %v (sbx serve --webhook-allow lets private receivers through)", err)
	}
	return nil
}

// Client returns an HTTP client whose every connection is checked by the
// guard at dial time, after name resolution, so that DNS answers (or a
// rebinding between two of them) cannot lead it to a refused address. It
// uses no proxy (a proxy would dial for it, unchecked) and follows no
// redirects (a redirect is a failed attempt).
func (g *Guard) Client(timeout time.Duration) *http.Client {
	d := &net.Dialer{
		Timeout: timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook dial %s: %w", address, err)
			}
			if err := g.Check(ap); err != nil {
				return fmt.Errorf("webhook address refused: %w", err)
			}
			return nil
		},
	}
	tr := &http.Transport{
		Proxy:                 nil, // never the environment's: a proxy would dial unchecked
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       time.Minute,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
