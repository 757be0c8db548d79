package api

import (
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/wire"
)

// privateTraffic reports whether a create request asks for private ports.
func privateTraffic(n *wire.SandboxNetwork) bool {
	return n != nil && n.AllowPublicTraffic != nil && !*n.AllowPublicTraffic
}

// networkOf describes a sandbox's network settings (its ports' access
// and ingress options) for its details.
func networkOf(sb *sandbox.Sandbox) *wire.SandboxNetwork {
	public := sb.TrafficToken == ""
	return &wire.SandboxNetwork{AllowPublicTraffic: &public, MaskRequestHost: sb.Life.MaskRequestHost, HTTPSPorts: sb.Life.HTTPSPorts}
}
