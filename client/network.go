package client

import (
	"context"
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
type NetworkPolicy struct {
	AllowOut            []string
	DenyOut             []string
	AllowInternetAccess *bool
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
}

// apply puts p into a create request's E2B fields.
func (p *NetworkPolicy) apply(body *wire.NewSandbox) {
	if p == nil {
		return
	}
	body.AllowInternetAccess = p.AllowInternetAccess
	if len(p.AllowOut)+len(p.DenyOut) > 0 {
		if body.Network == nil {
			body.Network = &wire.SandboxNetwork{}
		}
		body.Network.AllowOut, body.Network.DenyOut = p.AllowOut, p.DenyOut
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
	_, err := c.do(ctx, http.MethodPut, "/sandboxes/"+escape(id)+"/network", nil, body, nil)
	return err
}

// UpdateNetwork replaces the sandbox's egress policy; see
// [Client.UpdateNetwork].
func (s *Sandbox) UpdateNetwork(ctx context.Context, p NetworkPolicy) error {
	return s.c.UpdateNetwork(ctx, s.ID, p)
}
