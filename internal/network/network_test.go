package network

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network tests need root (they create namespaces, interfaces and nftables rules)")
	}
}

// randomSubnet returns a random 10.x.y.0/24 (tests never route it
// anywhere but to their own namespaces).
func randomSubnet() netip.Prefix {
	b := make([]byte, 2)
	rand.Read(b)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + b[0]%100, b[1], 0}), 24)
}

func newTestNetwork(t *testing.T) *Network {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	var n *Network
	var err error
	for try := 0; try < 5; try++ {
		n, err = New(context.Background(), Config{DataDir: dir, Subnet: randomSubnet(), Upstreams: []string{"127.0.0.1:1"}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil || !strings.Contains(err.Error(), "overlaps") {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func nsExec(t *testing.T, ns string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + ns, "--"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestSetupTeardown(t *testing.T) {
	n := newTestNetwork(t)
	ctx := context.Background()
	ep, err := n.Setup(ctx, "abcdefghij0123456789", Egress{}, &UserMapping{HostID: 100000000, Size: 65536})
	if err != nil {
		t.Fatal(err)
	}
	out, err := nsExec(t, ep.NetNS, "ip", "-4", "-o", "addr", "show", "eth0")
	if err != nil || !strings.Contains(out, ep.Addr.String()+"/30") {
		t.Fatalf("eth0 in the namespace: %v\n%s", err, out)
	}
	out, _ = nsExec(t, ep.NetNS, "ip", "route")
	if !strings.Contains(out, "default via "+ep.DNS.String()) {
		t.Fatalf("no default route via %s:\n%s", ep.DNS, out)
	}
	out, _ = nsExec(t, ep.NetNS, "ip", "-6", "addr")
	if strings.TrimSpace(out) != "" {
		t.Fatalf("the namespace has IPv6 addresses:\n%s", out)
	}
	host := n.boxes["abcdefghij0123456789"].host
	if _, err := netlink.LinkByName(host); err != nil {
		t.Fatalf("host side %s: %v", host, err)
	}
	cc, _ := nftables.New()
	if ok, _ := n.fw.tableExists(cc); !ok {
		t.Fatal("no nftables table")
	}
	if err := n.SetPolicy(ctx, "abcdefghij0123456789", mustParse(t, Policy{AllowOut: []string{"example.com", "1.2.3.4/32:443"}, DenyOut: []string{"0.0.0.0/0"}})); err != nil {
		t.Fatal(err)
	}
	if err := n.Teardown(ctx, "abcdefghij0123456789"); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(host); err == nil {
		t.Fatalf("%s still exists", host)
	}
	if _, err := os.Stat(ep.NetNS); !os.IsNotExist(err) {
		t.Fatalf("namespace file still there: %v", err)
	}
	n.Close()
	cc, _ = nftables.New()
	if ok, _ := n.fw.tableExists(cc); ok {
		t.Fatal("table left after Close with no sandbox")
	}
}

func TestPolicyParse(t *testing.T) {
	for _, tc := range []struct {
		entry string
		ok    bool
	}{
		{"8.8.8.8", true},
		{"10.0.0.0/8", true},
		{"10.0.0.0/8:443", true},
		{"example.com", true},
		{"*.github.com", true},
		{"*.github.com:22", true},
		{"Example.COM.", true},
		{"*", false},
		{"*.", false},
		{"a.*.com", false},
		{"exa mple.com", false},
		{"10.0.0.0/33", false},
		{"10.0.0.300", false},
		{"1.2.3.4:0", false},
		{"1.2.3.4:65536", false},
		{"example.com:http", false},
		{"::1", false},
		{"", false},
		{"-bad.com", false},
	} {
		_, _, err := parseEntry(tc.entry)
		if (err == nil) != tc.ok {
			t.Errorf("parseEntry(%q): err=%v, want ok=%v", tc.entry, err, tc.ok)
		}
	}
}

func TestVerdict(t *testing.T) {
	f := false
	pol, err := compile(Policy{AllowOut: []string{"good.test", "*.ok.test", "9.9.9.9"}, DenyOut: []string{"bad.test"}, AllowInternetAccess: &f}, false)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	yes := func(string) bool { return true }
	no := func(string) bool { return false }
	for i, tc := range []struct {
		dst      string
		name     string
		resolves func(string) bool
		resolved bool
		want     bool
	}{
		{"9.9.9.9", "", no, false, true},
		{"9.9.9.9", "bad.test", no, false, true}, // allow CIDR wins
		{"1.1.1.1", "good.test", yes, false, true},
		{"1.1.1.1", "good.test", no, false, false}, // Host/SNI not matching the address
		{"1.1.1.1", "a.b.ok.test", yes, false, true},
		{"1.1.1.1", "ok.test", yes, false, false}, // wildcard excludes the apex
		{"1.1.1.1", "bad.test", yes, false, false},
		{"1.1.1.1", "other.test", yes, true, false}, // a name outside the rules
		{"1.1.1.1", "", no, true, true},             // resolved for an allowed name
		{"1.1.1.1", "", no, false, false},
	} {
		if got := pol.verdict(ip(tc.dst), 443, tc.name, tc.resolves, tc.resolved); got != tc.want {
			t.Errorf("%d: verdict(%s, %q) = %v, want %v", i, tc.dst, tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		want bool
	}{{"good.test", true}, {"x.ok.test", true}, {"bad.test", false}, {"other.test", false}} {
		if got, _ := pol.dnsAllowed(tc.name); got != tc.want {
			t.Errorf("dnsAllowed(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	open, _ := compile(Policy{DenyOut: []string{"bad.test", "*.bad.test"}}, false)
	for _, tc := range []struct {
		name string
		want bool
	}{{"good.test", true}, {"bad.test", false}, {"x.bad.test", false}} {
		if got, _ := open.dnsAllowed(tc.name); got != tc.want {
			t.Errorf("open policy: dnsAllowed(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseName(t *testing.T) {
	name, done := parseName([]byte("GET / HTTP/1.1\r\nHost: Example.com:8080\r\nAccept: */*\r\n\r\n"))
	if !done || name != "example.com" {
		t.Fatalf("HTTP: %q %v", name, done)
	}
	if _, done := parseName([]byte("GET / HTTP/1.1\r\nHo")); done {
		t.Fatal("a partial request is not done")
	}
	if name, done := parseName([]byte("SSH-2.0-OpenSSH\r\n")); !done || name != "" {
		t.Fatalf("non-HTTP: %q %v", name, done)
	}
	hello := clientHello(t, "api.github.com")
	for cut := 1; cut < len(hello); cut += 37 {
		if _, done := parseName(hello[:cut]); done {
			t.Fatalf("ClientHello cut at %d/%d reported done", cut, len(hello))
		}
	}
	if name, done := parseName(hello); !done || name != "api.github.com" {
		t.Fatalf("TLS: %q %v", name, done)
	}
}

// clientHello returns the first bytes crypto/tls sends for serverName.
func clientHello(t *testing.T, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	go tls.Client(b, &tls.Config{ServerName: serverName}).Handshake()
	buf := make([]byte, 64<<10)
	var out []byte
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := a.Read(buf)
		out = append(out, buf[:n]...)
		if _, done := parseName(out); done || err != nil {
			b.Close()
			return out
		}
	}
}

// BenchmarkSetup measures a sandbox network's set-up (namespaces owned by a
// user namespace, veth, addresses, rules) and tear-down.
func BenchmarkSetup(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root")
	}
	dir := b.TempDir()
	n, err := New(context.Background(), Config{DataDir: dir, Subnet: randomSubnet(), Upstreams: []string{"127.0.0.1:1"}}, slog.New(slog.NewTextHandler(benchLog(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	var setup, teardown time.Duration
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bench%015d", i)
		t0 := time.Now()
		if _, err := n.Setup(ctx, id, Egress{}, &UserMapping{HostID: 100000000, Size: 65536}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := n.Teardown(ctx, id); err != nil {
			b.Fatal(err)
		}
		setup += t1.Sub(t0)
		teardown += time.Since(t1)
	}
	b.ReportMetric(float64(setup.Microseconds())/float64(b.N)/1000, "setup-ms/op")
	b.ReportMetric(float64(teardown.Microseconds())/float64(b.N)/1000, "teardown-ms/op")
}

// benchLog is where BenchmarkSetup logs: stderr with SBX_BENCH_LOG=1.
func benchLog() io.Writer {
	if os.Getenv("SBX_BENCH_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

func mustParse(t *testing.T, p Policy) Egress {
	t.Helper()
	e, err := ParsePolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestPortsAfterServer: the forwarder and the proxy are closed to the
// host's network while the server runs, and once it is gone (a crash: its
// table stays, its ports go back to the kernel) the rules it leaves drop
// nothing of whoever gets those ports next, neither a listener's SYNs nor
// the SYN-ACKs of a connection made from one.
func TestPortsAfterServer(t *testing.T) {
	n := newTestNetwork(t)
	t.Cleanup(func() {
		cc, _ := nftables.New()
		cc.DelTable(n.fw.tbl())
		cc.Flush()
		unix.Unmount(n.nsDir, unix.MNT_DETACH)
	})
	ports := []int{int(n.dns.port), int(n.egress.port)}
	for _, p := range ports {
		// A dropped SYN gives no event to wait for: a loopback connect
		// that is let through completes well within the time-out.
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", p), 500*time.Millisecond)
		if err == nil {
			c.Close()
			t.Fatalf("port %d of the forwarder or the proxy is open to the host", p)
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("dial port %d: %v, want a time-out (dropped)", p, err)
		}
	}
	n.closeListeners()
	cc, _ := nftables.New()
	if ok, _ := n.fw.tableExists(cc); !ok {
		t.Fatal("no nftables table")
	}
	for _, p := range ports {
		// A connection from port p: its SYN-ACK is for p.
		peer, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p}}
		c, err := d.Dial("tcp4", peer.Addr().String())
		if err != nil {
			t.Fatalf("connect from port %d after the server: %v", p, err)
		}
		s, err := peer.Accept()
		if err != nil {
			t.Fatal(err)
		}
		s.Close() // first, so that port p is not left in TIME_WAIT
		c.Close()
		peer.Close()
		// A listener on port p.
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatal(err)
		}
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("connect to a listener on port %d after the server: %v", p, err)
		}
		c.Close()
		ln.Close()
	}
}

// TestTwoServers: a sandbox reaches its server's DNS forwarder (TCP and
// UDP) while another server's table is on the host, as
// it is with two servers on one host (a fleet's nodes in tests) or with
// a table a crashed server left. Every server marks its sockets alike,
// and each table's input chain sees every packet.
func TestTwoServers(t *testing.T) {
	other := newTestNetwork(t)
	t.Cleanup(other.Close)
	n := newTestNetwork(t)
	t.Cleanup(n.Close)
	ctx := context.Background()
	id := "twoservers0123456789"
	ep, err := n.Setup(ctx, id, Egress{}, &UserMapping{HostID: 100000000, Size: 65536})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Teardown(ctx, id) })
	// A TCP connect to port 53 (redirected to the forwarder) completes
	// only if its SYN reaches the forwarder's socket; a dropped one
	// times out.
	out, err := nsExec(t, ep.NetNS, "timeout", "5", "bash", "-c", "exec 3<>/dev/tcp/"+ep.DNS.String()+"/53 && echo connected")
	if err != nil || !strings.Contains(out, "connected") {
		t.Fatalf("TCP to the forwarder with another server's table present: %v %s", err, out)
	}
	// UDP: the forwarder answers (its upstream is unreachable: SERVFAIL
	// or REFUSED, still an answer) rather than nothing.
	q := "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(4)\n" +
		"s.sendto(bytes.fromhex('abcd01000001000000000000076578616d706c6503636f6d0000010001'),('" + ep.DNS.String() + "',53))\n" +
		"d=s.recv(512);print('answer',d[:2].hex())"
	out, err = nsExec(t, ep.NetNS, "/usr/bin/python3", "-c", q)
	if err != nil || !strings.Contains(out, "answer abcd") {
		t.Fatalf("UDP DNS to the forwarder with another server's table present: %v %s", err, out)
	}
}
