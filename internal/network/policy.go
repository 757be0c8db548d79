package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/network/l7"
)

// Policy is a sandbox's egress policy as callers set it, in E2B's terms.
// Entries of AllowOut and DenyOut are CIDRs ("10.0.0.0/8"), IPv4 addresses
// ("8.8.8.8"), domains ("example.com") or wildcard domains ("*.example.com",
// which matches every subdomain at any depth but not example.com itself),
// each optionally followed by ":PORT" (1-65535) to restrict the entry to
// one TCP/UDP port. Allowed entries always take precedence over denied ones.
// AllowInternetAccess false is the same as denying 0.0.0.0/0.
//
// What nothing can allow is the server-wide deny list: the host's own
// addresses, other sandboxes, link-local addresses (cloud metadata) and
// whatever sbx serve's --egress-deny adds.
//
// Rules (E2B's network.rules) set headers on the HTTP and HTTPS requests
// to matching domains, filling in secret placeholders on the host (package
// l7); they allow nothing by themselves. EgressProxy sends the sandbox's
// allowed TCP through a SOCKS5 proxy.
type Policy struct {
	AllowOut            []string `json:"allowOut,omitempty"`
	DenyOut             []string `json:"denyOut,omitempty"`
	AllowInternetAccess *bool    `json:"allowInternetAccess,omitempty"`

	Rules       map[string][]l7.RuleSpec `json:"rules,omitempty"`
	EgressProxy *l7.SOCKS5               `json:"egressProxy,omitempty"`
}

// maxEntries bounds a policy so that a request cannot make the kernel
// evaluate an unbounded rule list on every new connection.
const maxEntries = 512

// ipRule is one CIDR entry of a policy.
type ipRule struct {
	prefix netip.Prefix
	port   uint16 // 0: every port and protocol
}

// domainRule is one domain entry of a policy.
type domainRule struct {
	// name is lower-case, without a trailing dot.
	name string
	// wildcard matches subdomains of name at any depth, not name itself.
	wildcard bool
	port     uint16
}

func (d domainRule) matches(host string, port uint16) bool {
	if d.port != 0 && d.port != port {
		return false
	}
	if d.wildcard {
		return strings.HasSuffix(host, "."+d.name)
	}
	return host == d.name
}

// compiled is a policy parsed into what the nftables rules, the DNS
// forwarder and the transparent proxy evaluate.
type compiled struct {
	allowIP, denyIP         []ipRule
	allowDomain, denyDomain []domainRule
	// rules are the L7 rules; socks the SOCKS5 upstream (nil: none).
	rules *l7.Rules
	socks *l7.SOCKS5
}

// domainRules reports whether the sandbox's TCP traffic must go through
// the transparent proxy: a rule names a domain, an L7 rule may apply, or
// an upstream proxy is set.
func (c *compiled) domainRules() bool {
	return len(c.allowDomain) > 0 || len(c.denyDomain) > 0 || !c.rules.Empty() || c.socks != nil
}

// internetDenied reports whether the policy denies every address not
// explicitly allowed (a deny entry of 0.0.0.0/0 on every port).
func (c *compiled) internetDenied() bool {
	for _, r := range c.denyIP {
		if r.prefix.Bits() == 0 && r.port == 0 {
			return true
		}
	}
	return false
}

// compile validates p. Errors are errdefs.ErrInvalidArgument with a message
// naming the bad entry. denyByDefault applies when p does not say whether
// the sandbox may reach the internet.
func compile(p Policy, denyByDefault bool) (*compiled, error) {
	if len(p.AllowOut)+len(p.DenyOut) > maxEntries {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "network: at most %d allowOut and denyOut entries", maxEntries)
	}
	c := &compiled{}
	for _, e := range p.AllowOut {
		ip, dom, err := parseEntry(e)
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "network.allowOut: %v", err)
		}
		if dom != nil {
			c.allowDomain = append(c.allowDomain, *dom)
		} else {
			c.allowIP = append(c.allowIP, *ip)
		}
	}
	for _, e := range p.DenyOut {
		ip, dom, err := parseEntry(e)
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "network.denyOut: %v", err)
		}
		if dom != nil {
			c.denyDomain = append(c.denyDomain, *dom)
		} else {
			c.denyIP = append(c.denyIP, *ip)
		}
	}
	rules, err := l7.ParseRules(p.Rules)
	if err != nil {
		return nil, err
	}
	c.rules = rules
	if p.EgressProxy != nil {
		if err := p.EgressProxy.Check(); err != nil {
			return nil, err
		}
		c.socks = p.EgressProxy
	}
	if p.AllowInternetAccess != nil && !*p.AllowInternetAccess || p.AllowInternetAccess == nil && denyByDefault {
		c.denyIP = append(c.denyIP, ipRule{prefix: netip.MustParsePrefix("0.0.0.0/0")})
	}
	return c, nil
}

// Egress is an egress policy ParsePolicy has checked, with its entries
// parsed: the form the API hands down and Network's Setup and SetPolicy
// take, so a policy is validated once, where it enters the server. The
// zero Egress is the empty Policy (the server's default).
type Egress struct {
	policy Policy
	// rules are the policy's entries as parsed, without the server's
	// default for AllowInternetAccess; nil for the zero Egress.
	rules *compiled
}

// ParsePolicy checks p and parses its entries. Errors are
// errdefs.ErrInvalidArgument with a message naming the bad entry.
func ParsePolicy(p Policy) (Egress, error) {
	c, err := compile(p, false)
	if err != nil {
		return Egress{}, err
	}
	return Egress{policy: p, rules: c}, nil
}

// Policy returns the policy as it was given.
func (e Egress) Policy() Policy { return e.policy }

// SecretRefs returns the names of the secrets e's rules refer to.
func (e Egress) SecretRefs() []string {
	if e.rules == nil {
		return nil
	}
	return e.rules.rules.Secrets()
}

// TokenRefs returns the names of the workload identity tokens e's rules
// refer to.
func (e Egress) TokenRefs() []string {
	if e.rules == nil {
		return nil
	}
	return e.rules.rules.Tokens()
}

// Intercepts reports whether e has L7 rules: the sandbox then needs its
// egress CA in its trust store from its first boot.
func (e Egress) Intercepts() bool { return e.rules != nil && !e.rules.rules.Empty() }

// compiled returns e's rules with the server's default applied:
// denyByDefault denies the internet when the policy does not say.
func (e Egress) compiled(denyByDefault bool) *compiled {
	c := e.rules
	if c == nil {
		c = &compiled{}
	}
	if e.policy.AllowInternetAccess == nil && denyByDefault {
		d := *c
		d.denyIP = append(append([]ipRule{}, c.denyIP...), ipRule{prefix: netip.MustParsePrefix("0.0.0.0/0")})
		return &d
	}
	return c
}

// parseEntry parses one allowOut/denyOut entry.
func parseEntry(e string) (*ipRule, *domainRule, error) {
	s := strings.TrimSpace(e)
	if s == "" {
		return nil, nil, fmt.Errorf("empty entry")
	}
	if len(s) > 270 {
		return nil, nil, fmt.Errorf("entry %.40q... is too long", s)
	}
	var port uint16
	// A port suffix: the last ':' (IPv6 is not supported, so an address
	// never contains one).
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		n, err := strconv.Atoi(s[i+1:])
		if err != nil || n < 1 || n > 65535 {
			return nil, nil, fmt.Errorf("%q: port must be a number from 1 to 65535", e)
		}
		port = uint16(n)
		s = s[:i]
	}
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil || !pfx.Addr().Is4() {
			return nil, nil, fmt.Errorf("%q is not a valid IPv4 CIDR", e)
		}
		return &ipRule{prefix: pfx.Masked(), port: port}, nil, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if !a.Is4() {
			return nil, nil, fmt.Errorf("%q: only IPv4 addresses are supported (sandboxes have no IPv6)", e)
		}
		return &ipRule{prefix: netip.PrefixFrom(a, 32), port: port}, nil, nil
	}
	if looksNumeric(s) {
		return nil, nil, fmt.Errorf("%q is not a valid IPv4 address", e)
	}
	d, err := parseDomain(s)
	if err != nil {
		return nil, nil, fmt.Errorf("%q: %v", e, err)
	}
	d.port = port
	return nil, &d, nil
}

// looksNumeric is true for strings made of digits and dots only, which are
// malformed addresses rather than domain names.
func looksNumeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

// parseDomain validates a domain pattern: an optional leading "*." and
// then a DNS name of letters, digits, '-' and '_' in labels of 1-63
// characters, at most 253 in all. A bare "*" or a '*' anywhere else is
// illegal.
func parseDomain(s string) (domainRule, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	var d domainRule
	if strings.HasPrefix(s, "*.") {
		d.wildcard = true
		s = s[2:]
	}
	if s == "" || s == "*" {
		return d, fmt.Errorf("a wildcard must name a domain (\"*.example.com\")")
	}
	if len(s) > 253 {
		return d, fmt.Errorf("domain is longer than 253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return d, fmt.Errorf("illegal domain: labels must be 1-63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return d, fmt.Errorf("illegal domain: a label cannot start or end with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				if c == '*' {
					return d, fmt.Errorf("illegal domain: '*' is only allowed as a leading \"*.\"")
				}
				return d, fmt.Errorf("illegal domain: character %q", c)
			}
		}
	}
	d.name = s
	return d, nil
}

// verdict is the transparent proxy's and the DNS forwarder's decision
// procedure, the same order the kernel rules follow for traffic without a
// name:
//
//  1. an allow CIDR that covers dst allows (allowed entries win);
//  2. with a name (HTTP Host, TLS SNI): an allow-domain match allows, if
//     dst is an address the name resolves to (checked by the caller through
//     resolves); a deny-domain match denies;
//  3. without a name: an address the sandbox resolved for an allowed domain
//     allows (resolvedAllowed);
//  4. a deny CIDR that covers dst denies;
//  5. otherwise allowed.
func (c *compiled) verdict(dst netip.Addr, port uint16, name string, resolves func(name string) bool, resolvedAllowed bool) bool {
	for _, r := range c.allowIP {
		if r.prefix.Contains(dst) && (r.port == 0 || r.port == port) {
			return true
		}
	}
	if name != "" {
		for _, d := range c.allowDomain {
			if d.matches(name, port) {
				// Threat: a Host/SNI naming an allowed domain sent to an
				// arbitrary address (domain fronting, or a fake Host header
				// to reach a denied IP): the name allows only the addresses
				// it really resolves to.
				return resolves(name)
			}
		}
		for _, d := range c.denyDomain {
			if d.matches(name, port) {
				return false
			}
		}
	} else if resolvedAllowed {
		return true
	}
	for _, r := range c.denyIP {
		if r.prefix.Contains(dst) && (r.port == 0 || r.port == port) {
			return false
		}
	}
	return true
}

// dnsAllowed decides whether the forwarder resolves name for a sandbox:
// names matching an allow rule always, names matching a deny rule never,
// and other names only while the sandbox may reach the internet at large.
// Threat: with all egress denied, forwarding arbitrary names would still
// let code exfiltrate data in the query names themselves to an attacker's
// authoritative server.
func (c *compiled) dnsAllowed(name string) (allowed, allowListed bool) {
	for _, d := range c.allowDomain {
		if d.matches(name, d.port) {
			return true, true
		}
	}
	for _, d := range c.denyDomain {
		// A rule for one port leaves the name usable on the others.
		if d.port == 0 && d.matches(name, 0) {
			return false, false
		}
	}
	return !c.internetDenied(), false
}

// RuleSpec, TransformSpec and SOCKS5 are the shapes of a policy's Rules
// and EgressProxy (package l7's).
type (
	RuleSpec      = l7.RuleSpec
	TransformSpec = l7.TransformSpec
	SOCKS5        = l7.SOCKS5
)
