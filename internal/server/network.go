package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// NetworkConfig is sbx serve's networking configuration.
type NetworkConfig struct {
	// Disabled leaves sandboxes with loopback only (--network none).
	Disabled bool
	// Subnet is split into a /30 per sandbox (--subnet).
	Subnet netip.Prefix
	// DNSUpstreams are the resolvers sbx's DNS forwarder asks
	// (--dns-upstream); empty means the host's.
	DNSUpstreams []string
	// Deny lists CIDRs no sandbox may reach (--egress-deny), on top of the
	// built-in list.
	Deny []netip.Prefix
	// DenyInternetByDefault denies egress to sandboxes created without
	// allow_internet_access (--internet=false).
	DenyInternetByDefault bool
}

// DefaultSubnet is --subnet's default: not 10.88.0.0/16 (podman's default
// network) nor in 172.17-31 (Docker's), which hosts often route already.
var DefaultSubnet = netip.MustParsePrefix("10.223.0.0/16")

func startNetwork(ctx context.Context, cfg Config, log *slog.Logger) (*network.Network, error) {
	if cfg.Net.Disabled {
		return nil, nil
	}
	subnet := cfg.Net.Subnet
	if !subnet.IsValid() {
		subnet = DefaultSubnet
	}
	n, err := network.New(ctx, network.Config{
		DataDir:               cfg.DataDir,
		Subnet:                subnet,
		Upstreams:             cfg.Net.DNSUpstreams,
		Deny:                  cfg.Net.Deny,
		DenyInternetByDefault: cfg.Net.DenyInternetByDefault,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("sandbox networking: %w", err)
	}
	return n, nil
}

// netIface avoids a typed nil in the Manager's interface field.
func netIface(n *network.Network) sandbox.Network {
	if n == nil {
		return nil
	}
	return n
}
