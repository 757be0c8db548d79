package network

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The nftables side of the network layer. Each sbx serve owns one table,
// "inet sbx_<prefix>", named after its data directory so several servers on
// one host never touch each other's rules, and matches only interfaces
// whose names start with its prefix. Every change is one netlink batch,
// which the kernel applies atomically: there is no instant at which a
// sandbox's traffic passes unfiltered.
//
// The table, for sandbox interfaces (iif = the host side of a sandbox's
// veth):
//
//	pre (filter, prerouting, before NAT):
//	    not ours → return; not IPv4 → drop; established → accept;
//	    iifname vmap @boxes (jump sb<idx>); anything else → drop
//	sb<idx>: source address is the sandbox's own, else drop (spoofing);
//	    DNS (port 53) → accept (redirected to sbx's forwarder below);
//	    jump gdeny (host addresses, link-local/metadata, other sandboxes,
//	    loopback, multicast, --egress-deny);
//	    with domain rules: TCP → accept (redirected to the proxy below);
//	    allow CIDRs → accept; @n<idx> (IPs resolved for allowed domains,
//	    with their TTL) → accept; deny CIDRs → drop; accept
//	natpre (nat, prerouting): DNS → sbx's forwarder; TCP from @proxied
//	    interfaces → sbx's transparent proxy
//	input: from sandboxes only the forwarder, the proxy and replies;
//	    sbx's forwarders and proxies (sockets marked sockMark) only from
//	    sandboxes
//	fwd: nothing is forwarded into a sandbox but replies
//	post (nat, postrouting): masquerade the sandboxes' subnet
type firewall struct {
	table      string
	prefix     string // interface name prefix
	subnet     netip.Prefix
	dnsPort    uint16
	egressPort uint16
	globalDeny []netip.Prefix
}

func (f *firewall) tbl() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: f.table}
}

func ifname(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

func be16(v uint16) []byte { return binaryutil.BigEndian.PutUint16(v) }

func ne32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// Expression builders. Register 1 is the scratch register throughout.

func iifPrefix(op expr.CmpOp, prefix string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		// Comparing len(prefix) bytes is nft's `iifname "prefix*"`.
		&expr.Cmp{Op: op, Register: 1, Data: []byte(prefix)},
	}
}

func oifPrefix(op expr.CmpOp, prefix string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(prefix)},
	}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(bits), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func dport(p uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(p)},
	}
}

// addrMatch matches the IPv4 source (src) or destination address against
// prefix p.
func addrMatch(src bool, op expr.CmpOp, p netip.Prefix) []expr.Any {
	off := uint32(16)
	if src {
		off = 12
	}
	a := p.Addr().As4()
	out := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}}
	if p.Bits() < 32 {
		m := uint32(0xffffffff) << (32 - p.Bits())
		if p.Bits() == 0 {
			m = 0
		}
		mask := make([]byte, 4)
		binary.BigEndian.PutUint32(mask, m)
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}})
	}
	return append(out, &expr.Cmp{Op: op, Register: 1, Data: a[:]})
}

// socketMarked matches packets for a socket that carries sockMark: one of
// an sbx forwarder's or proxy's.
func socketMarked() []expr.Any {
	return []expr.Any{
		&expr.Socket{Key: expr.SocketKeyMark, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(sockMark)},
	}
}

// sockMark is the SO_MARK of the DNS forwarder's and the transparent
// proxy's sockets, the same for every sbx serve: the input chain knows
// them by it (see socketMarked). It is also the mark of their replies to
// sandboxes, so it keeps clear of the bits that kube-proxy, Calico,
// Cilium and Tailscale give meaning to.
const sockMark = 0x5b

// markedListen opens sockets that carry sockMark (CAP_NET_ADMIN).
var markedListen = net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, sockMark)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_MARK: %w", serr)
	}
	return nil
}}

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

// reject refuses a packet with an ICMP "administratively prohibited", so
// that a denied connection fails at once instead of hanging until its
// time-out.
func reject() expr.Any {
	return &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}
}

func jump(chain string) expr.Any {
	return &expr.Verdict{Kind: expr.VerdictKind(unix.NFT_JUMP), Chain: chain}
}

func redirect(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: be16(port)},
		&expr.Redir{RegisterProtoMin: 1},
	}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func boxChain(idx int) string { return fmt.Sprintf("sb%x", idx) }
func dnsSet(idx int) string   { return fmt.Sprintf("n%x", idx) }

// build queues, on cc, the replacement of the whole table by one holding
// boxes. exists says whether the table is there now.
func (f *firewall) build(cc *nftables.Conn, exists bool, boxes []*box) {
	t := f.tbl()
	if exists {
		cc.DelTable(t)
	}
	cc.AddTable(t)
	accept := nftables.ChainPolicyAccept
	pre := cc.AddChain(&nftables.Chain{Name: "pre", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	natpre := cc.AddChain(&nftables.Chain{Name: "natpre", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	input := cc.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	fwd := cc.AddChain(&nftables.Chain{Name: "fwd", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	post := cc.AddChain(&nftables.Chain{Name: "post", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	gdeny := cc.AddChain(&nftables.Chain{Name: "gdeny", Table: t})

	boxesMap := &nftables.Set{Table: t, Name: "boxes", KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict, IsMap: true}
	proxied := &nftables.Set{Table: t, Name: "proxied", KeyType: nftables.TypeIFName}
	var elems, pelems []nftables.SetElement
	for _, b := range boxes {
		elems = append(elems, f.boxElem(b))
		if b.pol.domainRules() {
			pelems = append(pelems, nftables.SetElement{Key: ifname(b.host)})
		}
	}
	// Per-box chains and sets must exist before the map refers to them.
	for _, b := range boxes {
		f.addBoxObjects(cc, b)
	}
	cc.AddSet(boxesMap, elems)
	cc.AddSet(proxied, pelems)

	add := func(c *nftables.Chain, e []expr.Any) { cc.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: e}) }

	// Server-wide denies. Threat: a sandbox reaching the host's own
	// services (any local address, the veth gateway included), another
	// sandbox, cloud metadata (169.254.169.254, link-local), or
	// addresses the operator walled off. No sandbox policy can undo these:
	// they are checked before any allow rule.
	add(gdeny, []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(unix.RTN_LOCAL)},
		reject(),
	})
	for _, p := range f.globalDeny {
		add(gdeny, cat(addrMatch(false, expr.CmpOpEq, p), []expr.Any{reject()}))
	}

	// pre
	add(pre, cat(iifPrefix(expr.CmpOpNeq, f.prefix), []expr.Any{verdict(expr.VerdictReturn)}))
	// Sandboxes have no IPv6 (disabled in their namespace); drop any that
	// shows up rather than let it bypass the IPv4 rules.
	add(pre, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		verdict(expr.VerdictDrop),
	})
	add(pre, cat(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), []expr.Any{verdict(expr.VerdictAccept)}))
	add(pre, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: boxesMap.Name, SetID: boxesMap.ID, IsDestRegSet: true, DestRegister: 0},
	})
	// Fail closed: an interface of ours without a chain (being set up or
	// torn down) passes nothing.
	add(pre, []expr.Any{verdict(expr.VerdictDrop)})

	// natpre
	add(natpre, cat(iifPrefix(expr.CmpOpNeq, f.prefix), []expr.Any{verdict(expr.VerdictReturn)}))
	add(natpre, cat(l4proto(unix.IPPROTO_UDP), dport(53), redirect(f.dnsPort)))
	add(natpre, cat(l4proto(unix.IPPROTO_TCP), dport(53), redirect(f.dnsPort)))
	add(natpre, cat([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: proxied.Name, SetID: proxied.ID},
	}, l4proto(unix.IPPROTO_TCP), redirect(f.egressPort)))

	// input
	add(input, cat(iifPrefix(expr.CmpOpEq, f.prefix), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), []expr.Any{verdict(expr.VerdictAccept)}))
	// With the server down its ports are free; what a sandbox's DNS and
	// proxied TCP are redirected to must still be sbx's, not whatever
	// else took the port.
	add(input, cat(iifPrefix(expr.CmpOpEq, f.prefix), l4proto(unix.IPPROTO_UDP), dport(f.dnsPort), socketMarked(), []expr.Any{verdict(expr.VerdictAccept)}))
	add(input, cat(iifPrefix(expr.CmpOpEq, f.prefix), l4proto(unix.IPPROTO_TCP), dport(f.dnsPort), socketMarked(), []expr.Any{verdict(expr.VerdictAccept)}))
	add(input, cat(iifPrefix(expr.CmpOpEq, f.prefix), l4proto(unix.IPPROTO_TCP), dport(f.egressPort), socketMarked(), []expr.Any{verdict(expr.VerdictAccept)}))
	add(input, cat(iifPrefix(expr.CmpOpEq, f.prefix), []expr.Any{verdict(expr.VerdictDrop)}))
	// The forwarder and the proxy listen on every address; they serve
	// sandboxes only (threat: an open resolver / open relay for the
	// host's network). Matched by the socket the packet is for, not by
	// port: this table outlives the server when sandboxes do (and always
	// after a crash), its ports go back to the kernel, and a rule on a
	// port would then drop whatever else gets it, a listener's SYNs or
	// the SYN-ACKs of a connection made from it. Every sbx serve marks
	// its sockets the same, and every server's table sees every packet:
	// the rule leaves alone what comes from any server's sandboxes (each
	// server's own pre chain keeps its sandboxes to its own forwarder and
	// proxy), else a second server on the host, or a table a dead one
	// left, would drop this server's sandboxes' DNS and proxied TCP.
	add(input, cat(iifPrefix(expr.CmpOpNeq, ifacePrefix), socketMarked(), []expr.Any{verdict(expr.VerdictDrop)}))

	// fwd. Threat: hosts on the server's networks routing into sandboxes.
	add(fwd, cat(oifPrefix(expr.CmpOpEq, f.prefix), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), []expr.Any{verdict(expr.VerdictAccept)}))
	add(fwd, cat(oifPrefix(expr.CmpOpEq, f.prefix), []expr.Any{verdict(expr.VerdictDrop)}))

	// post
	add(post, cat([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}, addrMatch(true, expr.CmpOpEq, f.subnet), oifPrefix(expr.CmpOpNeq, f.prefix), []expr.Any{&expr.Masq{}}))
}

func (f *firewall) boxElem(b *box) nftables.SetElement {
	return nftables.SetElement{Key: ifname(b.host), VerdictData: &expr.Verdict{Kind: expr.VerdictKind(unix.NFT_JUMP), Chain: boxChain(b.idx)}}
}

// addBoxObjects queues box b's chain (with its rules) and DNS set.
func (f *firewall) addBoxObjects(cc *nftables.Conn, b *box) {
	t := f.tbl()
	set := &nftables.Set{Table: t, Name: dnsSet(b.idx), KeyType: nftables.TypeIPAddr, HasTimeout: true}
	cc.AddSet(set, nil)
	c := cc.AddChain(&nftables.Chain{Name: boxChain(b.idx), Table: t})
	f.boxRules(cc, c, set, b)
}

// boxRules queues sandbox b's policy rules into chain c.
func (f *firewall) boxRules(cc *nftables.Conn, c *nftables.Chain, set *nftables.Set, b *box) {
	t := f.tbl()
	add := func(e []expr.Any) { cc.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: e}) }
	// Threat: a sandbox forging another's source address (to be served by
	// the forwarder or proxy as that sandbox, or to reflect traffic).
	add(cat(addrMatch(true, expr.CmpOpNeq, netip.PrefixFrom(b.addr, 32)), []expr.Any{verdict(expr.VerdictDrop)}))
	// DNS, whatever server the sandbox asks, goes to sbx's forwarder
	// (natpre), where domain rules apply.
	add(cat(l4proto(unix.IPPROTO_UDP), dport(53), []expr.Any{verdict(expr.VerdictAccept)}))
	add(cat(l4proto(unix.IPPROTO_TCP), dport(53), []expr.Any{verdict(expr.VerdictAccept)}))
	add([]expr.Any{jump("gdeny")})
	if b.pol.domainRules() {
		// TCP goes to the transparent proxy, which applies the whole
		// policy with the connection's Host/SNI in hand.
		add(cat(l4proto(unix.IPPROTO_TCP), []expr.Any{verdict(expr.VerdictAccept)}))
	}
	ipRules := func(rules []ipRule, v expr.Any) {
		for _, r := range rules {
			m := addrMatch(false, expr.CmpOpEq, r.prefix)
			if r.port == 0 {
				add(cat(m, []expr.Any{v}))
				continue
			}
			for _, p := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
				add(cat(m, l4proto(p), dport(r.port), []expr.Any{v}))
			}
		}
	}
	ipRules(b.pol.allowIP, verdict(expr.VerdictAccept))
	add([]expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		verdict(expr.VerdictAccept),
	})
	ipRules(b.pol.denyIP, reject())
	// What no rule denies is allowed (E2B's semantics). An explicit
	// verdict: falling off the chain would return to pre, which drops.
	add([]expr.Any{verdict(expr.VerdictAccept)})
}

// addBox queues adding sandbox b to the table.
func (f *firewall) addBox(cc *nftables.Conn, b *box) {
	t := f.tbl()
	f.addBoxObjects(cc, b)
	cc.SetAddElements(&nftables.Set{Table: t, Name: "boxes", KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict, IsMap: true}, []nftables.SetElement{f.boxElem(b)})
	if b.pol.domainRules() {
		cc.SetAddElements(&nftables.Set{Table: t, Name: "proxied", KeyType: nftables.TypeIFName}, []nftables.SetElement{{Key: ifname(b.host)}})
	}
}

// delBox queues removing sandbox b from the table. inProxied says whether
// its interface is in the proxied set now.
func (f *firewall) delBox(cc *nftables.Conn, b *box, inProxied bool) {
	t := f.tbl()
	cc.SetDeleteElements(&nftables.Set{Table: t, Name: "boxes", KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict, IsMap: true}, []nftables.SetElement{f.boxElem(b)})
	if inProxied {
		cc.SetDeleteElements(&nftables.Set{Table: t, Name: "proxied", KeyType: nftables.TypeIFName}, []nftables.SetElement{{Key: ifname(b.host)}})
	}
	c := &nftables.Chain{Name: boxChain(b.idx), Table: t}
	cc.FlushChain(c)
	cc.DelChain(c)
	cc.DelSet(&nftables.Set{Table: t, Name: dnsSet(b.idx), KeyType: nftables.TypeIPAddr, HasTimeout: true})
}

// setPolicy queues replacing box b's rules by those of its (new) policy.
// wasProxied says whether its interface is in the proxied set now.
func (f *firewall) setPolicy(cc *nftables.Conn, b *box, wasProxied bool) {
	t := f.tbl()
	c := &nftables.Chain{Name: boxChain(b.idx), Table: t}
	set := &nftables.Set{Table: t, Name: dnsSet(b.idx), KeyType: nftables.TypeIPAddr, HasTimeout: true}
	cc.FlushChain(c)
	// Addresses let in for the old policy's domains are not the new
	// policy's business.
	cc.FlushSet(set)
	f.boxRules(cc, c, set, b)
	proxied := &nftables.Set{Table: t, Name: "proxied", KeyType: nftables.TypeIFName}
	switch now := b.pol.domainRules(); {
	case now && !wasProxied:
		cc.SetAddElements(proxied, []nftables.SetElement{{Key: ifname(b.host)}})
	case !now && wasProxied:
		cc.SetDeleteElements(proxied, []nftables.SetElement{{Key: ifname(b.host)}})
	}
}

// allowResolved queues adding addresses resolved for an allowed domain to
// box b's DNS set for ttl.
func (f *firewall) allowResolved(cc *nftables.Conn, b *box, addrs []netip.Addr, ttl time.Duration, fresh bool) {
	set := &nftables.Set{Table: f.tbl(), Name: dnsSet(b.idx), KeyType: nftables.TypeIPAddr, HasTimeout: true}
	var els []nftables.SetElement
	for _, a := range addrs {
		k := a.As4()
		els = append(els, nftables.SetElement{Key: k[:], Timeout: ttl})
	}
	if !fresh {
		cc.SetDeleteElements(set, els)
	}
	cc.SetAddElements(set, els)
}

// tableExists reports whether f's table is in the kernel.
func (f *firewall) tableExists(cc *nftables.Conn) (bool, error) {
	ts, err := cc.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == f.table {
			return true, nil
		}
	}
	return false, nil
}
