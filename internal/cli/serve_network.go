package cli

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/internal/server"
)

// networkFlags are sbx serve's networking flags.
type networkFlags struct {
	mode     string
	subnet   string
	upstream string
	deny     string
	internet bool
	egressCA string
}

func addNetworkFlags(fs *flag.FlagSet) *networkFlags {
	f := &networkFlags{}
	fs.StringVar(&f.mode, "network", "veth", "sandbox networking: veth (own namespace, veth pair, NAT and egress policy) or none (loopback only)")
	fs.StringVar(&f.subnet, "subnet", server.DefaultSubnet.String(), "private IPv4 range split into a /30 per sandbox; must not overlap a network the host routes")
	fs.StringVar(&f.upstream, "dns-upstream", "", "comma-separated resolvers (IP or IP:PORT) the sandboxes' DNS forwarder asks (default: the host's /etc/resolv.conf)")
	fs.StringVar(&f.deny, "egress-deny", "", "comma-separated CIDRs no sandbox may reach, whatever its policy (added to the host's addresses, link-local/metadata, loopback, multicast and other sandboxes)")
	fs.BoolVar(&f.internet, "internet", true, "let sandboxes reach the internet unless their create request says otherwise (allow_internet_access); false denies all egress by default")
	fs.StringVar(&f.egressCA, "egress-ca-file", "", "PEM `file` of CAs that HTTPS upstreams of sandboxes' L7 egress rules may be signed by, besides the host's trust store (private CAs, tests)")
	return f
}

func (f *networkFlags) config() (server.NetworkConfig, error) {
	var c server.NetworkConfig
	switch f.mode {
	case "veth":
	case "none":
		c.Disabled = true
		return c, nil
	default:
		return c, fmt.Errorf("--network: %q is not veth or none", f.mode)
	}
	p, err := netip.ParsePrefix(f.subnet)
	if err != nil || !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 29 {
		return c, fmt.Errorf("--subnet: %q is not an IPv4 CIDR from /8 to /29", f.subnet)
	}
	c.Subnet = p.Masked()
	for _, s := range splitList(f.upstream) {
		u, err := network.ParseUpstream(s)
		if err != nil {
			return c, fmt.Errorf("--dns-upstream: %w", err)
		}
		c.DNSUpstreams = append(c.DNSUpstreams, u)
	}
	for _, s := range splitList(f.deny) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || !a.Is4() {
				return c, fmt.Errorf("--egress-deny: %q is not an IPv4 CIDR or address", s)
			}
			p = netip.PrefixFrom(a, 32)
		}
		if !p.Addr().Is4() {
			return c, fmt.Errorf("--egress-deny: %q is not IPv4", s)
		}
		c.Deny = append(c.Deny, p.Masked())
	}
	c.DenyInternetByDefault = !f.internet
	c.EgressCAFile = f.egressCA
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
