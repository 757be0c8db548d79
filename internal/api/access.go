package api

import (
	"encoding/json"
)

// sandboxNetwork is E2B's SandboxNetworkConfig, the "network" object of a
// create request and of a sandbox's details. Fields sbx does not implement
// are ignored on input.
type sandboxNetwork struct {
	// AllowPublicTraffic false makes the sandbox's ports reachable through
	// the proxy only with its traffic access token. Absent means true.
	AllowPublicTraffic *bool `json:"allowPublicTraffic,omitempty"`
	// Egress (network.go): allowOut and denyOut, and the egress features
	// sbx refuses rather than ignores.
	AllowOut    []string        `json:"allowOut,omitempty"`
	DenyOut     []string        `json:"denyOut,omitempty"`
	EgressProxy json.RawMessage `json:"egressProxy,omitempty"`
	Rules       json.RawMessage `json:"rules,omitempty"`
}

// privateTraffic reports whether a create request asks for private ports.
func (n *sandboxNetwork) privateTraffic() bool {
	return n != nil && n.AllowPublicTraffic != nil && !*n.AllowPublicTraffic
}

// networkOf describes a sandbox's network settings for its details.
func networkOf(trafficToken string) *sandboxNetwork {
	public := trafficToken == ""
	return &sandboxNetwork{AllowPublicTraffic: &public}
}
