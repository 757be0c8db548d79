// Package network gives each sandbox its own network: a named network
// namespace, a veth pair to the host, an address from a private subnet, DNS
// through sbx's forwarder, NAT to the outside, and an egress policy enforced
// by nftables, the forwarder and a transparent proxy.
//
// # Overview
//
// Every sandbox gets a /30 of the server's subnet (--subnet): the host side
// of its veth holds the first address (the sandbox's gateway and DNS
// server), eth0 in the sandbox's namespace the second. There is no bridge:
// each sandbox is alone on its link, and the host routes between links only
// what the rules let through (see firewall). The namespace is bind-mounted
// under DATA_DIR/network/ns so it outlives sbx serve, and everything in it
// is standard (an address, a default route), so runc joins it and gVisor's
// netstack takes its interfaces over.
//
// Egress policy (Policy) is E2B's: allow and deny lists of CIDRs, addresses
// and domains, allowed entries winning. Addresses are enforced in the
// kernel. Domains are enforced twice: the DNS forwarder refuses names that
// are denied (and, when the internet is denied, every name not allowed) and
// lets in the addresses of allowed names for their TTL; and, when a policy
// names domains, every TCP connection of the sandbox goes through a
// transparent proxy that reads the HTTP Host or TLS SNI and checks it, so
// connecting to an address learnt elsewhere does not get around a rule.
//
// # Usage
//
// New sets up the server's table, forwarder and proxy and re-installs the
// rules of every sandbox whose state it finds (after a restart); Setup
// gives a sandbox its namespace before its box starts; SetPolicy changes
// the policy of a running one; Teardown removes everything; Prune removes
// what belongs to sandboxes that are gone.
package network

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/network/l7"
)

// Config configures the network layer of one sbx serve.
type Config struct {
	// DataDir is the server's data directory; state lives in
	// DataDir/network, and the names of the server's interfaces and
	// nftables table derive from it.
	DataDir string
	// Subnet is split into a /30 per sandbox. It must not overlap a
	// network the host already routes.
	Subnet netip.Prefix
	// Upstreams are the DNS servers ("ip:port") the forwarder asks; empty
	// means the host's (/etc/resolv.conf).
	Upstreams []string
	// Deny lists CIDRs no sandbox may reach, whatever its policy, on top
	// of the built-in list (host addresses, link-local, loopback,
	// multicast, the sandboxes' subnet).
	Deny []netip.Prefix
	// DenyInternetByDefault denies all egress to sandboxes whose policy
	// does not set AllowInternetAccess (E2B's default, and sbx's, is to
	// allow it).
	DenyInternetByDefault bool
	// Secrets fills the secret placeholders of sandboxes' L7 rules; nil
	// fills none (requests needing one are answered 502).
	Secrets l7.Secrets
	// EgressRoots verifies the upstreams of intercepted HTTPS (nil: the
	// host's trust store).
	EgressRoots *x509.CertPool
}

// Network is the network layer of one sbx serve. It is safe for concurrent
// use.
type Network struct {
	cfg    Config
	log    *slog.Logger
	fw     *firewall
	nsDir  string
	boxDir string

	dns    *forwarder
	egress *egressProxy
	l7     *l7.Proxy
	hostNS *os.File // the host's network namespace, for veth peers
	pool   *nsPool  // namespaces made ahead of creates

	mu    sync.Mutex
	boxes map[string]*box // by sandbox id
	// stale holds the policies of sandboxes whose network did not survive
	// (a host restart): it is made again, with the same policy, when the
	// sandbox boots.
	stale  map[string]Policy
	byAddr map[netip.Addr]*box // by sandbox address
	used   map[int]bool        // allocated /30 indexes
	next   int
}

// box is one sandbox's network.
type box struct {
	id   string
	idx  int
	host string
	addr netip.Addr
	gw   netip.Addr

	policy Policy
	pol    *compiled
	// proxied mirrors membership of the proxied set.
	proxied bool
	// ca is the sandbox's egress CA, made at Setup for a policy with L7
	// rules; nil otherwise (its HTTPS is then never intercepted).
	ca *l7.CA
	// resolved holds, per name the sandbox resolved through the
	// forwarder, the addresses and their expiry; inSet the expiry of
	// addresses in the kernel's DNS set.
	resolved map[string]resolvedName
	inSet    map[netip.Addr]time.Time
}

type resolvedName struct {
	addrs  []netip.Addr
	expiry time.Time
}

// state is a sandbox's network as stored in DataDir/network/boxes/ID.json.
type state struct {
	ID     string `json:"id"`
	Index  int    `json:"index"`
	Policy Policy `json:"policy"`
	// CA is the sandbox's egress CA, certificate and key (l7.CA.Marshal).
	CA []byte `json:"ca,omitempty"`
}

// Prefix returns the short name prefix a server with data directory dir
// uses for its interfaces ("sx" and six hex digits; with a sandbox's index
// in hex, at most 13 characters, under the kernel's 15).
func Prefix(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	h := sha256.Sum256([]byte(abs))
	return ifacePrefix + hex.EncodeToString(h[:3])
}

// ifacePrefix begins the names of every sbx server's interfaces (see
// [Prefix]).
const ifacePrefix = "sx"

// TableName returns the nftables table (family inet) a server with data
// directory dir uses.
func TableName(dir string) string { return "sbx_" + Prefix(dir)[len(ifacePrefix):] }

// New sets the network layer up: it enables IPv4 forwarding, starts the
// DNS forwarder and the transparent proxy, and installs the server's
// nftables table with the rules of every sandbox whose state is stored
// (sandboxes outlive the server; call Prune once the live ones are known).
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Network, error) {
	if !cfg.Subnet.Addr().Is4() || cfg.Subnet.Bits() > 29 || cfg.Subnet.Bits() < 8 {
		return nil, fmt.Errorf("subnet %s: must be an IPv4 prefix from /8 to /29", cfg.Subnet)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	prefix := Prefix(cfg.DataDir)
	if err := checkSubnetFree(cfg.Subnet, prefix); err != nil {
		return nil, err
	}
	if len(cfg.Upstreams) == 0 {
		ups, err := hostResolvers("/etc/resolv.conf")
		if err != nil {
			return nil, err
		}
		cfg.Upstreams = ups
	}
	n := &Network{
		cfg:    cfg,
		log:    logger.With("component", "network"),
		nsDir:  filepath.Join(cfg.DataDir, "network", "ns"),
		boxDir: filepath.Join(cfg.DataDir, "network", "boxes"),
		boxes:  map[string]*box{},
		stale:  map[string]Policy{},
		byAddr: map[netip.Addr]*box{},
		used:   map[int]bool{},
		l7:     l7.New(cfg.EgressRoots, cfg.Secrets, logger.With("component", "egress")),
	}
	n.pool = newNSPool(2, n.log)
	if err := os.MkdirAll(n.boxDir, 0o700); err != nil {
		return nil, fmt.Errorf("network state dir: %w", err)
	}
	if err := prepareNSDir(n.nsDir); err != nil {
		return nil, err
	}
	var err error
	if n.hostNS, err = openHostNS(); err != nil {
		return nil, err
	}
	// Routing between the sandboxes' links and the host's uplinks. The
	// table's forward chain decides what may pass.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
		n.hostNS.Close()
		return nil, fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	if n.dns, err = newForwarder(n, cfg.Upstreams); err != nil {
		n.closeListeners()
		return nil, err
	}
	if n.egress, err = newEgressProxy(n); err != nil {
		n.closeListeners()
		return nil, err
	}
	deny := []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("127.0.0.0/8"),
		// Link-local: cloud metadata services (169.254.169.254) hand
		// out the host's credentials.
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("224.0.0.0/4"),
		netip.MustParsePrefix("240.0.0.0/4"),
		// Other sandboxes.
		cfg.Subnet,
	}
	deny = append(deny, cfg.Deny...)
	n.fw = &firewall{
		table: TableName(cfg.DataDir), prefix: prefix, subnet: cfg.Subnet,
		dnsPort: n.dns.port, egressPort: n.egress.port, globalDeny: deny,
	}
	if err := n.load(); err != nil {
		n.closeListeners()
		return nil, err
	}
	if err := n.install(); err != nil {
		n.closeListeners()
		return nil, err
	}
	n.dns.serve()
	n.egress.serve()
	return n, nil
}

// load reads the stored state of every sandbox network.
func (n *Network) load() error {
	ents, err := os.ReadDir(n.boxDir)
	if err != nil {
		return fmt.Errorf("read network state: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(n.boxDir, e.Name()))
		if err != nil {
			return fmt.Errorf("read network state: %w", err)
		}
		var st state
		if err := json.Unmarshal(data, &st); err != nil || st.ID+".json" != e.Name() {
			n.log.Error("unreadable network state; removing it", "file", e.Name(), "err", err)
			os.Remove(filepath.Join(n.boxDir, e.Name()))
			continue
		}
		pol, err := compile(st.Policy, n.cfg.DenyInternetByDefault)
		if err != nil {
			// A stored policy this version cannot read: fail closed.
			n.log.Error("stored network policy is invalid; denying all egress", "sandbox_id", st.ID, "err", err)
			f := false
			pol, _ = compile(Policy{AllowInternetAccess: &f}, true)
		}
		b := n.newBox(st.ID, st.Index, st.Policy, pol)
		if b == nil {
			n.log.Error("stored network does not fit the subnet; removing it", "sandbox_id", st.ID, "index", st.Index)
			os.Remove(filepath.Join(n.boxDir, e.Name()))
			continue
		}
		if len(st.CA) > 0 {
			if b.ca, err = l7.LoadCA(st.CA); err != nil {
				n.log.Error("stored egress CA is unreadable; HTTPS of the sandbox is no longer intercepted", "sandbox_id", st.ID, "err", err)
			}
		}
		if _, err := netlink.LinkByName(b.host); err != nil || !nsMounted(n.nsPath(b.id)) {
			// The host restarted (or someone removed the namespace or
			// the link): what is left is empty files.
			n.log.Warn("sandbox network is gone; it is made again when the sandbox starts", "sandbox_id", b.id)
			if err := deleteNS(n.nsPath(b.id), b.host); err != nil {
				n.log.Error("remove what is left of a sandbox network", "sandbox_id", b.id, "err", err)
			}
			n.stale[b.id] = st.Policy
			continue
		}
		n.boxes[b.id] = b
		n.byAddr[b.addr] = b
		n.used[b.idx] = true
	}
	return nil
}

// install replaces the server's table with one holding every known box.
func (n *Network) install() error {
	cc, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	exists, err := n.fw.tableExists(cc)
	if err != nil {
		return err
	}
	var boxes []*box
	for _, b := range n.boxes {
		boxes = append(boxes, b)
		b.proxied = b.pol.domainRules()
		b.inSet = map[netip.Addr]time.Time{}
	}
	// The table with its first boxes in one batch; the others in batches
	// of installBatch after it. One batch of every box exceeds what one
	// netlink message may hold past a few hundred boxes (EMSGSIZE) or
	// what the kernel buffers for its answers past a few dozen (ENOBUFS).
	// A box not yet added meanwhile passes nothing new (the pre chain
	// drops interfaces of ours missing from the map): fail closed.
	first := boxes[:min(len(boxes), installBatch)]
	n.fw.build(cc, exists, first)
	if err := cc.Flush(); err != nil {
		return fmt.Errorf("install nftables table %s: %w", n.fw.table, err)
	}
	for rest := boxes[len(first):]; len(rest) > 0; {
		chunk := rest[:min(len(rest), installBatch)]
		rest = rest[len(chunk):]
		for _, b := range chunk {
			n.fw.addBox(cc, b)
		}
		if err := cc.Flush(); err != nil {
			return fmt.Errorf("install nftables table %s: add %d sandboxes: %w", n.fw.table, len(chunk), err)
		}
	}
	return nil
}

// installBatch is how many sandboxes' rules install sends in one netlink
// batch.
const installBatch = 8

// newBox returns the box for index idx, or nil if idx is outside the
// subnet.
func (n *Network) newBox(id string, idx int, p Policy, pol *compiled) *box {
	if idx < 0 || idx >= n.capacity() {
		return nil
	}
	base := n.cfg.Subnet.Addr().As4()
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(idx) * 4
	gw := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v + 1)})
	addr := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v + 2)})
	return &box{
		id: id, idx: idx, host: fmt.Sprintf("%s%x", n.fw.prefix, idx),
		addr: addr, gw: gw, policy: p, pol: pol,
		resolved: map[string]resolvedName{}, inSet: map[netip.Addr]time.Time{},
	}
}

func (n *Network) capacity() int { return 1 << (32 - n.cfg.Subnet.Bits() - 2) }

// Endpoint is what a sandbox's box needs to join its network.
type Endpoint struct {
	// NetNS is the path of the prepared network namespace.
	NetNS string
	// UserNS, set when Setup was given an owner mapping, is the path of
	// the user namespace that owns NetNS; the box must join it.
	UserNS string
	// Addr is the sandbox's address; DNS is the resolver it should use
	// (the host side of its link).
	Addr netip.Addr
	DNS  netip.Addr
	// CACert, set by Setup for a policy with L7 rules, is the sandbox's
	// egress CA certificate (PEM), for its trust store.
	CACert []byte
}

// Setup gives sandbox id a network with egress policy e. When owner is not nil the
// namespace is owned by a new user namespace with that mapping (the box's;
// see Endpoint.UserNS). On error nothing is left behind.
func (n *Network) Setup(ctx context.Context, id string, e Egress, owner *UserMapping) (ep Endpoint, err error) {
	p, pol := e.Policy(), e.compiled(n.cfg.DenyInternetByDefault)
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.boxes[id]; ok {
		return Endpoint{}, errdefs.New(errdefs.ErrConflict, "sandbox %q already has a network", id)
	}
	idx := -1
	for i := 0; i < n.capacity(); i++ {
		j := (n.next + i) % n.capacity()
		if !n.used[j] {
			idx = j
			break
		}
	}
	if idx < 0 {
		return Endpoint{}, errdefs.New(errdefs.ErrUnavailable, "no sandbox addresses left in subnet %s", n.cfg.Subnet)
	}
	n.next = idx + 1
	b := n.newBox(id, idx, p, pol)
	if !pol.rules.Empty() {
		if b.ca, err = l7.NewCA(id); err != nil {
			return Endpoint{}, fmt.Errorf("egress CA: %w", err)
		}
	}
	if err := n.writeState(b); err != nil {
		return Endpoint{}, err
	}
	spec := nsSpec{path: n.nsPath(id), host: b.host, addr: b.addr, gw: b.gw, bits: 30, owner: owner}
	if owner != nil {
		spec.userPath = spec.path + userSuffix
	}
	defer func() {
		if err != nil {
			if derr := deleteNS(spec.path, spec.host); derr != nil {
				n.log.Error("undo network set-up", "sandbox_id", id, "err", derr)
			}
			os.Remove(n.statePath(id))
		}
	}()
	// Leftovers of an earlier sandbox on the same index (a crash between
	// steps) would make the veth creation fail.
	if link, lerr := netlink.LinkByName(b.host); lerr == nil {
		netlink.LinkDel(link)
	}
	t0 := time.Now()
	if err := createNS(spec, n.hostNS, n.pool); err != nil {
		return Endpoint{}, err
	}
	// The rules go in before the host side comes up, so no packet of the
	// sandbox is ever routed without them.
	cc, err := nftables.New()
	if err != nil {
		return Endpoint{}, fmt.Errorf("nftables: %w", err)
	}
	t1 := time.Now()
	n.fw.addBox(cc, b)
	if err := cc.Flush(); err != nil {
		return Endpoint{}, fmt.Errorf("install sandbox rules: %w", err)
	}
	t2 := time.Now()
	b.proxied = pol.domainRules()
	if err := setupHostSide(spec); err != nil {
		n.removeRules(b)
		return Endpoint{}, err
	}
	n.boxes[id] = b
	n.byAddr[b.addr] = b
	n.used[idx] = true
	delete(n.stale, id)
	n.log.Debug("sandbox network set up", "sandbox_id", id, "addr", b.addr, "namespaces", t1.Sub(t0), "rules", t2.Sub(t1), "link", time.Since(t2))
	ep = Endpoint{NetNS: spec.path, UserNS: spec.userPath, Addr: b.addr, DNS: b.gw}
	if b.ca != nil {
		ep.CACert = b.ca.CertPEM()
	}
	return ep, nil
}

func (n *Network) nsPath(id string) string    { return filepath.Join(n.nsDir, id) }
func (n *Network) statePath(id string) string { return filepath.Join(n.boxDir, id+".json") }

func (n *Network) writeState(b *box) error {
	st := state{ID: b.id, Index: b.idx, Policy: b.policy}
	if b.ca != nil {
		ca, err := b.ca.Marshal()
		if err != nil {
			return fmt.Errorf("write network state: %w", err)
		}
		st.CA = ca
	}
	data, _ := json.Marshal(st)
	tmp := n.statePath(b.id) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write network state: %w", err)
	}
	if err := os.Rename(tmp, n.statePath(b.id)); err != nil {
		return fmt.Errorf("write network state: %w", err)
	}
	return nil
}

// removeRules deletes box b's rules from the table.
func (n *Network) removeRules(b *box) {
	cc, err := nftables.New()
	if err != nil {
		n.log.Error("nftables", "err", err)
		return
	}
	n.fw.delBox(cc, b, b.proxied)
	if err := cc.Flush(); err != nil {
		n.log.Error("remove sandbox rules", "sandbox_id", b.id, "err", err)
	}
}

// Teardown removes sandbox id's network: rules, interfaces, namespace,
// connection tracking entries and state. Unknown ids are not an error, but
// leftovers under the id's names are still removed.
func (n *Network) Teardown(ctx context.Context, id string) error {
	n.mu.Lock()
	b, ok := n.boxes[id]
	if ok {
		delete(n.boxes, id)
		delete(n.byAddr, b.addr)
		delete(n.used, b.idx)
	}
	delete(n.stale, id)
	n.mu.Unlock()
	var errs []error
	if ok {
		t0 := time.Now()
		n.mu.Lock()
		n.removeRules(b)
		n.mu.Unlock()
		t1 := time.Now()
		if err := deleteNS(n.nsPath(id), b.host); err != nil {
			errs = append(errs, err)
		}
		t2 := time.Now()
		defer func() {
			n.log.Debug("sandbox network removed", "sandbox_id", id, "rules", t1.Sub(t0), "namespaces", t2.Sub(t1), "conntrack", time.Since(t2))
		}()
		// Connection tracking entries of the dead sandbox would otherwise
		// linger for days (established TCP) and could match a new sandbox
		// given the same address.
		f := &netlink.ConntrackFilter{}
		f.AddIP(netlink.ConntrackOrigSrcIP, b.addr.AsSlice())
		if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
			errs = append(errs, fmt.Errorf("delete conntrack entries: %w", err))
		}
	} else if err := deleteNS(n.nsPath(id), ""); err != nil && !isNotFound(err) {
		errs = append(errs, err)
	}
	if err := os.Remove(n.statePath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SetPolicy replaces the egress policy of sandbox id with e. It takes effect for
// new connections at once; established ones continue.
func (n *Network) SetPolicy(ctx context.Context, id string, e Egress) error {
	p, pol := e.Policy(), e.compiled(n.cfg.DenyInternetByDefault)
	n.mu.Lock()
	defer n.mu.Unlock()
	b, ok := n.boxes[id]
	if !ok {
		return errdefs.New(errdefs.ErrNotFound, "sandbox %q has no network", id)
	}
	old, oldPol := b.policy, b.pol
	b.policy, b.pol = p, pol
	if err := n.writeState(b); err != nil {
		b.policy, b.pol = old, oldPol
		return err
	}
	cc, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	n.fw.setPolicy(cc, b, b.proxied)
	if err := cc.Flush(); err != nil {
		b.policy, b.pol = old, oldPol
		n.writeState(b)
		return fmt.Errorf("update sandbox rules: %w", err)
	}
	b.proxied = pol.domainRules()
	b.resolved = map[string]resolvedName{}
	b.inSet = map[netip.Addr]time.Time{}
	return nil
}

// Endpoint returns sandbox id's network, if it has one.
func (n *Network) Endpoint(id string) (Endpoint, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b, ok := n.boxes[id]
	if !ok {
		return Endpoint{}, false
	}
	ep := Endpoint{NetNS: n.nsPath(id), Addr: b.addr, DNS: b.gw}
	if _, err := os.Stat(ep.NetNS + userSuffix); err == nil {
		ep.UserNS = ep.NetNS + userSuffix
	}
	return ep, true
}

// Policy returns sandbox id's policy (also while its network waits to be
// made again after a host restart).
func (n *Network) Policy(id string) (Policy, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b, ok := n.boxes[id]
	if !ok {
		p, ok := n.stale[id]
		return p, ok
	}
	return b.policy, true
}

// Prune removes the network of every sandbox not in live, and interfaces
// and namespaces of this server that belong to no sandbox.
func (n *Network) Prune(ctx context.Context, live []string) error {
	n.mu.Lock()
	var gone []string
	for id := range n.boxes {
		if !slices.Contains(live, id) {
			gone = append(gone, id)
		}
	}
	for id := range n.stale {
		if !slices.Contains(live, id) {
			gone = append(gone, id)
		}
	}
	n.mu.Unlock()
	var errs []error
	for _, id := range gone {
		n.log.Info("removing the network of a sandbox that is gone", "sandbox_id", id)
		if err := n.Teardown(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	n.mu.Lock()
	hosts := map[string]bool{}
	for _, b := range n.boxes {
		hosts[b.host] = true
	}
	n.mu.Unlock()
	links, err := linkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	prefix := Prefix(n.cfg.DataDir)
	for _, l := range links {
		name := l.Attrs().Name
		if strings.HasPrefix(name, prefix) && !hosts[name] {
			n.log.Info("removing a stray sandbox interface", "link", name)
			netlink.LinkDel(l)
		}
	}
	ents, _ := os.ReadDir(n.nsDir)
	for _, e := range ents {
		id := strings.TrimSuffix(e.Name(), userSuffix)
		n.mu.Lock()
		_, ok := n.boxes[id]
		n.mu.Unlock()
		if !ok {
			n.log.Info("removing a stray namespace", "file", e.Name())
			deleteNS(filepath.Join(n.nsDir, id), "")
		}
	}
	return errors.Join(errs...)
}

// Close stops the forwarder and the proxy. Sandbox networks and their rules
// stay (sandboxes outlive the server; with the server down their DNS and
// proxied connections fail closed). With no sandbox left, the table and
// the namespace directory are removed too.
func (n *Network) Close() {
	n.closeListeners()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.boxes) > 0 {
		return
	}
	if cc, err := nftables.New(); err == nil {
		if ok, _ := n.fw.tableExists(cc); ok {
			cc.DelTable(n.fw.tbl())
			if err := cc.Flush(); err != nil {
				n.log.Error("remove nftables table", "err", err)
			}
		}
	}
	if err := unix.Unmount(n.nsDir, unix.MNT_DETACH); err == nil {
		os.Remove(n.nsDir)
	}
}

func (n *Network) closeListeners() {
	n.pool.stop()
	if n.hostNS != nil {
		n.hostNS.Close()
	}
	if n.dns != nil {
		n.dns.close()
	}
	if n.egress != nil {
		n.egress.close()
	}
}

// boxByAddr returns the sandbox with address a.
func (n *Network) boxByAddr(a netip.Addr) *box {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byAddr[a.Unmap()]
}

// checkSubnetFree refuses a subnet that overlaps a route the host already
// has, other than those of this server's own interfaces: two servers (or a
// server and a real network) on one subnet would steal each other's
// traffic.
func checkSubnetFree(subnet netip.Prefix, prefix string) error {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route
		}
		p, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		rp := netip.PrefixFrom(p.Unmap(), ones)
		if ones == 0 || !rp.Overlaps(subnet) {
			continue
		}
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && strings.HasPrefix(l.Attrs().Name, prefix) {
			continue
		}
		name := ""
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			name = l.Attrs().Name
		}
		return fmt.Errorf("subnet %s overlaps the host's route to %s (dev %s): choose another --subnet", subnet, rp, name)
	}
	return nil
}

// hostResolvers returns the nameservers of a resolv.conf as "ip:53".
func hostResolvers(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s for the DNS upstreams (set --dns-upstream): %w", path, err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, net.JoinHostPort(a.String(), "53"))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s names no nameserver; set --dns-upstream", path)
	}
	return out, nil
}

// ParseUpstream normalises a --dns-upstream entry ("ip" or "ip:port").
func ParseUpstream(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an IP address or IP:port", s)
	}
	return net.JoinHostPort(a.String(), "53"), nil
}

// ttlBounds bounds how long an address resolved for an allowed domain stays
// allowed: at least a minute (clients cache past tiny TTLs), at most a day.
func ttlBound(ttl time.Duration) time.Duration {
	return min(max(ttl, time.Minute), 24*time.Hour)
}

// allowResolved records that box b resolved name to addrs (for an
// allow-listed name) and lets those addresses in for ttl.
func (n *Network) allowResolved(b *box, name string, addrs []netip.Addr, ttl time.Duration) {
	if len(addrs) == 0 {
		return
	}
	ttl = ttlBound(ttl)
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.boxes[b.id] != b {
		return // gone or replaced meanwhile
	}
	b.resolved[name] = resolvedName{addrs: addrs, expiry: now.Add(ttl)}
	var fresh, refresh []netip.Addr
	for _, a := range addrs {
		exp, ok := b.inSet[a]
		switch {
		case !ok || exp.Before(now.Add(time.Second)):
			fresh = append(fresh, a)
		case exp.Before(now.Add(ttl - 10*time.Second)):
			refresh = append(refresh, a)
		default:
			continue
		}
		b.inSet[a] = now.Add(ttl)
	}
	for _, batch := range []struct {
		addrs []netip.Addr
		fresh bool
	}{{fresh, true}, {refresh, false}} {
		if len(batch.addrs) == 0 {
			continue
		}
		cc, err := nftables.New()
		if err != nil {
			continue
		}
		n.fw.allowResolved(cc, b, batch.addrs, ttl, batch.fresh)
		if err := cc.Flush(); err != nil {
			// An element that expired in the kernel between our check
			// and the batch (or was already there): add without delete.
			cc, _ = nftables.New()
			if cc != nil {
				n.fw.allowResolved(cc, b, batch.addrs, ttl, true)
				if err := cc.Flush(); err != nil {
					n.log.Warn("allow resolved addresses", "sandbox_id", b.id, "err", err)
				}
			}
		}
	}
}

// resolvedFor reports whether box b resolved name to a through the
// forwarder and the answer is still fresh.
func (n *Network) resolvedFor(b *box, name string, a netip.Addr) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := b.resolved[name]
	return ok && time.Now().Before(r.expiry) && slices.Contains(r.addrs, a)
}

// resolvedAllowed reports whether a is an address box b resolved for an
// allow-listed name, still within its TTL.
func (n *Network) resolvedAllowed(b *box, a netip.Addr) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	for _, r := range b.resolved {
		if now.Before(r.expiry) && slices.Contains(r.addrs, a) {
			return true
		}
	}
	return false
}

// policyOf returns b's compiled policy as of now.
func (n *Network) policyOf(b *box) *compiled {
	n.mu.Lock()
	defer n.mu.Unlock()
	return b.pol
}

// globallyDenied reports whether a is on the server-wide deny list or is
// one of the host's own addresses.
func (n *Network) globallyDenied(a netip.Addr) bool {
	for _, p := range n.fw.globalDeny {
		if p.Contains(a) {
			return true
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, ia := range addrs {
		if ipn, ok := ia.(*net.IPNet); ok {
			if ha, ok := netip.AddrFromSlice(ipn.IP); ok && ha.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// linkList lists the host's links. A dump that links changed under (other
// servers' sandboxes starting and stopping) is retried; if every try is
// interrupted the last, possibly incomplete, list is returned: the caller
// only removes stray links of its own data directory, so a link missing
// from it stays for the next prune and a link listed but gone meanwhile
// fails to delete harmlessly.
func linkList() ([]netlink.Link, error) {
	var links []netlink.Link
	var err error
	for range 10 {
		if links, err = netlink.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return links, err
		}
	}
	return links, nil
}

// SentBytes returns the bytes sandbox id has sent through its link so
// far: the receive counter of the link's host side, which counts from
// the link's creation (a new link, after a restore, starts again from
// zero). False when the sandbox has no link here.
func (n *Network) SentBytes(id string) (int64, bool) {
	n.mu.Lock()
	b, ok := n.boxes[id]
	n.mu.Unlock()
	if !ok {
		return 0, false
	}
	raw, err := os.ReadFile(filepath.Join("/sys/class/net", b.host, "statistics", "rx_bytes"))
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	return v, err == nil
}
