package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Netns is a set of network namespaces made for one test, each a host of
// its own with one address on a bridge the test made: a fleet of sbx
// nodes on one machine, each reachable from the test (on the host side of
// the bridge) and from the others, and each cut off by [NetnsHost.LinkDown].
// Nothing leaves the bridge: it has no uplink and no route out.
//
// Postgres, which the harness runs on a unix socket, is shared as it is
// (the namespaces share the host's files), or through [Netns.Postgres]
// over TCP on the bridge, so that a host whose link is down loses it too.
type Netns struct {
	Bridge string
	// Prefix is the bridge's subnet; Gateway, its first address, is the
	// host's (the test's) side.
	Prefix  netip.Prefix
	Gateway netip.Addr
	Hosts   []*NetnsHost
	id      string
}

// NetnsHost is one namespace: its name under /run/netns, the host side of
// its veth pair (on the bridge) and its address.
type NetnsHost struct {
	Name string
	Veth string
	Addr netip.Addr
}

// NewNetns makes n namespaces (h1 … hn) on a new bridge with a random /24
// (RandomSubnet), removed when the test ends.
func NewNetns(t T, n int) *Netns {
	t.Helper()
	if n < 1 || n > 200 {
		t.Fatalf("NewNetns: %d hosts, want 1 to 200", n)
	}
	b := make([]byte, 3)
	rand.Read(b)
	f := &Netns{id: hex.EncodeToString(b)}
	f.Bridge = "sbxf" + f.id
	f.Prefix = netip.MustParsePrefix(RandomSubnet(24))
	f.Gateway = f.Prefix.Addr().Next()
	t.Cleanup(func() { f.remove(t) })
	run(t, "ip", "link", "add", f.Bridge, "type", "bridge")
	run(t, "ip", "addr", "add", netip.PrefixFrom(f.Gateway, 24).String(), "dev", f.Bridge)
	run(t, "ip", "link", "set", f.Bridge, "up")
	addr := f.Gateway
	for i := range n {
		addr = addr.Next()
		h := &NetnsHost{Name: fmt.Sprintf("sbxf-%s-h%d", f.id, i+1), Veth: fmt.Sprintf("vf%sh%d", f.id, i+1), Addr: addr}
		f.Hosts = append(f.Hosts, h)
		peer := h.Veth + "p"
		run(t, "ip", "netns", "add", h.Name)
		run(t, "ip", "link", "add", h.Veth, "type", "veth", "peer", "name", peer)
		run(t, "ip", "link", "set", h.Veth, "master", f.Bridge)
		run(t, "ip", "link", "set", h.Veth, "up")
		run(t, "ip", "link", "set", peer, "netns", h.Name)
		in := func(args ...string) { run(t, append([]string{"ip", "-n", h.Name}, args...)...) }
		in("link", "set", "lo", "up")
		in("link", "set", peer, "name", "eth0")
		in("addr", "add", netip.PrefixFrom(h.Addr, 24).String(), "dev", "eth0")
		in("link", "set", "eth0", "up")
	}
	return f
}

// LinkDown cuts host h off the bridge (its veth down): a partition.
func (h *NetnsHost) LinkDown(t T) { t.Helper(); run(t, "ip", "link", "set", h.Veth, "down") }

// LinkUp joins host h to the bridge again.
func (h *NetnsHost) LinkUp(t T) { t.Helper(); run(t, "ip", "link", "set", h.Veth, "up") }

// Postgres returns a store URL for the database of dsn (a unix-socket URL
// from pgtest) reached over TCP at the bridge's gateway: a relay the test
// runs, to the socket, until it ends. A host whose link is down cannot
// reach it.
func (f *Netns) Postgres(t T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	sock := filepath.Join(q.Get("host"), ".s.PGSQL.5432")
	ln, err := net.Listen("tcp", net.JoinHostPort(f.Gateway.String(), "0"))
	if err != nil {
		t.Fatalf("postgres relay: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("unix", sock)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer wg.Done(); io.Copy(c, s); c.Close() }()
		}
	}()
	q.Del("host")
	return fmt.Sprintf("postgres://postgres@%s%s?%s", ln.Addr(), u.Path, q.Encode())
}

// remove deletes the namespaces (and with them their veth pairs) and the
// bridge. The servers in them must have stopped.
func (f *Netns) remove(t T) {
	for _, h := range f.Hosts {
		if out, err := exec.Command("ip", "netns", "delete", h.Name).CombinedOutput(); err != nil {
			t.Errorf("remove netns %s: %v: %s", h.Name, err, out)
		}
		exec.Command("ip", "link", "delete", h.Veth).Run() // gone with the namespace, usually
	}
	if out, err := exec.Command("ip", "link", "delete", f.Bridge).CombinedOutput(); err != nil {
		t.Errorf("remove bridge %s: %v: %s", f.Bridge, err, out)
	}
}

func run(t T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}
