package client

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/sbxdev/sbx/wire"
)

// NetworkPolicy is a sandbox's egress policy (E2B's network settings).
//
// AllowOut and DenyOut entries are IPv4 addresses ("8.8.8.8"), CIDRs
// ("10.0.0.0/8"), domains ("example.com") or wildcard domains
// ("*.example.com", every subdomain but not the apex), each optionally with
// ":PORT". Allowed entries win over denied ones; what no deny entry covers
// is allowed. AllowInternetAccess false denies everything not allowed (as
// DenyOut "0.0.0.0/0" does); nil leaves it to the server's default.
//
// Whatever the policy, a sandbox never reaches the server's host, other
// sandboxes or cloud metadata addresses.
//
// Rules set headers on the HTTP and HTTPS requests to their domains
// (exact names or "*." wildcards), on the way out, with
// [SecretPlaceholder]s filled in by the server; they allow nothing by
// themselves. EgressProxy sends the sandbox's TCP through a SOCKS5 proxy.
type NetworkPolicy struct {
	AllowOut            []string
	DenyOut             []string
	AllowInternetAccess *bool
	Rules               map[string][]NetworkRule
	EgressProxy         *EgressProxy
}

// NetworkRule is one rule of [NetworkPolicy.Rules] (E2B's
// SandboxNetworkRule).
type NetworkRule struct {
	Transform *NetworkTransform `json:"transform,omitempty"`
}

// NetworkTransform sets Headers, replacing what the sandbox sent.
type NetworkTransform struct {
	Headers map[string]string `json:"headers,omitempty"`
}

// EgressProxy is a SOCKS5 proxy ("host:port", RFC 1929 credentials).
type EgressProxy struct {
	Address  string `json:"address"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

func (p *NetworkPolicy) l7() (proxy, rules json.RawMessage) {
	if len(p.Rules) > 0 {
		rules, _ = json.Marshal(p.Rules)
	}
	if p.EgressProxy != nil {
		proxy, _ = json.Marshal(p.EgressProxy)
	}
	return proxy, rules
}

// DenyAll returns a policy that denies all egress except to allow.
func DenyAll(allow ...string) *NetworkPolicy {
	f := false
	return &NetworkPolicy{AllowOut: allow, AllowInternetAccess: &f}
}

// NetworkConfig is the egress part of a sandbox's network settings as the
// server reports them.
type NetworkConfig struct {
	AllowOut []string `json:"allowOut,omitempty"`
	DenyOut  []string `json:"denyOut,omitempty"`
	// MaskRequestHost and HTTPSPorts are the ingress options the
	// sandbox was created with ([CreateOptions]).
	MaskRequestHost string `json:"maskRequestHost,omitempty"`
	HTTPSPorts      []int  `json:"httpsPorts,omitempty"`
}

// IAMToken is a workload identity token definition ([CreateOptions.IAMTokens],
// E2B's SandboxIamToken): its audience and type ("JWT-SVID").
type IAMToken struct {
	Audience  string `json:"audience"`
	TokenType string `json:"tokenType"`
}

// IdentityPlaceholder returns the placeholder a network rule's header
// value names workload identity token name with; the egress fills in a
// fresh token per request.
func IdentityPlaceholder(name string) string { return "${e2b.identity.tokens." + name + "}" }

// apply puts p into a create request's E2B fields.
func (p *NetworkPolicy) apply(body *wire.NewSandbox) {
	if p == nil {
		return
	}
	body.AllowInternetAccess = p.AllowInternetAccess
	if len(p.AllowOut)+len(p.DenyOut)+len(p.Rules) > 0 || p.EgressProxy != nil {
		if body.Network == nil {
			body.Network = &wire.SandboxNetwork{}
		}
		body.Network.AllowOut, body.Network.DenyOut = p.AllowOut, p.DenyOut
		body.Network.EgressProxy, body.Network.Rules = p.l7()
	}
}

// UpdateNetwork replaces running sandbox id's egress policy (an empty
// policy allows everything the server allows). New connections obey it at
// once; established ones continue.
func (c *Client) UpdateNetwork(ctx context.Context, id string, p NetworkPolicy) error {
	if id == "" {
		return errNoID
	}
	body := wire.NetworkUpdate{AllowInternetAccess: p.AllowInternetAccess, AllowOut: p.AllowOut, DenyOut: p.DenyOut}
	body.EgressProxy, body.Rules = p.l7()
	_, err := c.do(ctx, http.MethodPut, "/sandboxes/"+escape(id)+"/network", nil, body, nil)
	return err
}

// UpdateNetwork replaces the sandbox's egress policy; see
// [Client.UpdateNetwork].
func (s *Sandbox) UpdateNetwork(ctx context.Context, p NetworkPolicy) error {
	return s.c.UpdateNetwork(ctx, s.ID, p)
}
