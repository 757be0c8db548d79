package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/internal/network/l7"
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
	// EgressCAFile, when set, is a PEM file of CAs that intercepted HTTPS
	// upstreams may be signed by, besides the host's trust store
	// (--egress-ca-file).
	EgressCAFile string
}

// DefaultSubnet is --subnet's default: not 10.88.0.0/16 (podman's default
// network) nor in 172.17-31 (Docker's), which hosts often route already.
var DefaultSubnet = netip.MustParsePrefix("10.223.0.0/16")

func startNetwork(ctx context.Context, cfg Config, secrets l7.Secrets, log *slog.Logger) (*network.Network, error) {
	if cfg.Net.Disabled {
		return nil, nil
	}
	var extra []byte
	if cfg.Net.EgressCAFile != "" {
		var err error
		if extra, err = os.ReadFile(cfg.Net.EgressCAFile); err != nil {
			return nil, fmt.Errorf("--egress-ca-file: %w", err)
		}
	}
	roots, err := l7.Roots(extra)
	if err != nil {
		return nil, fmt.Errorf("--egress-ca-file %s: %w", cfg.Net.EgressCAFile, err)
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
		Secrets:               secrets,
		EgressRoots:           roots,
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
