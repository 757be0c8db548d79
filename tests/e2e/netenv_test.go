package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// testInternet is a stand-in for the internet that a test builds on the
// host: a network namespace joined to the host by a veth, holding two
// addresses (A and B) with an HTTP server on :80, an HTTPS server on :443
// and a DNS server on :53 of its own, and the cloud metadata address
// 169.254.169.254, routed to it for the sandboxes' subnet only. Sandbox
// traffic that a rule fails to stop lands here, never outside the machine.
type testInternet struct {
	NS       string     // name under /run/netns
	HostAddr netip.Addr // the host side of the veth
	A, B     netip.Addr // the namespace's addresses
	// DNS is "A:53", for sbx serve --dns-upstream.
	DNS string

	mu      sync.Mutex
	queries []string // names the DNS server was asked, in order
	hits    []string // "host path" of every HTTP(S) request served
}

// testNames is the test DNS zone: every name resolves to A except those
// under b.test, which resolve to B.
func (ti *testInternet) resolve(name string) (netip.Addr, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	switch {
	case name == "b.test" || strings.HasSuffix(name, ".b.test"):
		return ti.B, true
	case strings.HasSuffix(name, ".test"):
		return ti.A, true
	}
	return netip.Addr{}, false
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newTestInternet builds the namespace; sandboxSubnet is the server's
// --subnet (only it is routed to the fake metadata address).
func newTestInternet(t *testing.T, sandboxSubnet string) *testInternet {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	// A /29 in 10.200.0.0/13, outside the harness's 10.64.0.0/10.
	base := netip.AddrFrom4([4]byte{10, 200 + b[0]%8, b[1], b[2] &^ 7})
	ti := &testInternet{NS: "sbxinet-" + id}
	a4 := base.As4()
	ti.HostAddr = netip.AddrFrom4([4]byte{a4[0], a4[1], a4[2], a4[3] + 1})
	ti.A = netip.AddrFrom4([4]byte{a4[0], a4[1], a4[2], a4[3] + 2})
	ti.B = netip.AddrFrom4([4]byte{a4[0], a4[1], a4[2], a4[3] + 3})
	ti.DNS = ti.A.String() + ":53"
	hostIf, nsIf := "ti"+id, "tp"+id
	table := fmt.Sprint(20000 + int(b[3])*16 + int(b[0]%16))

	run(t, "ip", "netns", "add", ti.NS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ti.NS).Run() })
	run(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	run(t, "ip", "link", "set", nsIf, "netns", ti.NS)
	run(t, "ip", "addr", "add", ti.HostAddr.String()+"/29", "dev", hostIf)
	run(t, "ip", "link", "set", hostIf, "up")
	ns := func(args ...string) { run(t, append([]string{"ip", "netns", "exec", ti.NS}, args...)...) }
	ns("ip", "link", "set", "lo", "up")
	ns("ip", "link", "set", nsIf, "name", "eth0")
	ns("ip", "addr", "add", ti.A.String()+"/29", "dev", "eth0")
	ns("ip", "addr", "add", ti.B.String()+"/29", "dev", "eth0")
	ns("ip", "addr", "add", "169.254.169.254/32", "dev", "eth0")
	ns("ip", "link", "set", "eth0", "up")
	ns("ip", "route", "add", "default", "via", ti.HostAddr.String())
	// The metadata address, for packets from sandboxes only: a policy
	// routing rule, so the host's own routing is untouched.
	run(t, "ip", "route", "add", "169.254.169.254/32", "via", ti.A.String(), "dev", hostIf, "table", table)
	run(t, "ip", "rule", "add", "from", sandboxSubnet, "to", "169.254.169.254", "lookup", table)
	t.Cleanup(func() {
		exec.Command("ip", "rule", "del", "from", sandboxSubnet, "to", "169.254.169.254", "lookup", table).Run()
		exec.Command("ip", "route", "flush", "table", table).Run()
	})

	var http80, https443 net.Listener
	var dns net.PacketConn
	inNS(t, "/run/netns/"+ti.NS, func() error {
		var err error
		if http80, err = net.Listen("tcp4", ":80"); err != nil {
			return err
		}
		if https443, err = net.Listen("tcp4", ":443"); err != nil {
			return err
		}
		dns, err = net.ListenPacket("udp4", ":53")
		return err
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
		ti.mu.Lock()
		ti.hits = append(ti.hits, r.Host+" "+r.URL.Path)
		ti.mu.Unlock()
		fmt.Fprintf(w, "INTERNET-OK local=%s host=%s\n", local, r.Host)
	})
	s1 := &http.Server{Handler: h}
	s2 := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}}
	go s1.Serve(http80)
	go s2.ServeTLS(https443, "", "")
	go ti.serveDNS(dns)
	t.Cleanup(func() { s1.Close(); s2.Close(); dns.Close() })
	return ti
}

// inNS runs f on a thread moved into the network namespace at path; sockets
// f opens stay in that namespace.
func inNS(t *testing.T, path string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: it exits with the goroutine rather
		// than serve others from the wrong namespace.
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in netns %s: %v", path, err)
	}
}

func (ti *testInternet) serveDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		ti.mu.Lock()
		ti.queries = append(ti.queries, strings.TrimSuffix(q.Name.String(), "."))
		ti.mu.Unlock()
		rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
		addr, ok := ti.resolve(q.Name.String())
		if !ok {
			rh.RCode = dnsmessage.RCodeNameError
		}
		bld := dnsmessage.NewBuilder(nil, rh)
		bld.StartQuestions()
		bld.Question(q)
		if ok && q.Type == dnsmessage.TypeA {
			bld.StartAnswers()
			bld.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: addr.As4()})
		}
		out, err := bld.Finish()
		if err == nil {
			pc.WriteTo(out, from)
		}
	}
}

// Queries returns the names the test DNS server has been asked.
func (ti *testInternet) Queries() []string {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return append([]string(nil), ti.queries...)
}

// Hits returns the HTTP(S) requests served, as "host path".
func (ti *testInternet) Hits() []string {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return append([]string(nil), ti.hits...)
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		DNSNames:     []string{"*.test", "*.b.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// hostListener listens on every host address at a free port and records
// whether anybody connected; it is a host service no sandbox may reach.
type hostListener struct {
	ln   net.Listener
	Port int
	mu   sync.Mutex
	from []string
}

func newHostListener(t *testing.T) *hostListener {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	hl := &hostListener{ln: ln, Port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hl.mu.Lock()
			hl.from = append(hl.from, c.RemoteAddr().String())
			hl.mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return hl
}

func (hl *hostListener) Accepted() []string {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	return append([]string(nil), hl.from...)
}

// hostAddrs returns the host's IPv4 addresses (loopback excluded) on its
// own interfaces: veths come and go with other servers' sandboxes and other
// tests' namespaces, and an address that vanished mid-test would no longer
// be the host's.
func hostAddrs(t *testing.T) []netip.Addr {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, l := range links {
		if l.Type() == "veth" {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsLoopback() {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

var _ = os.Getpid
