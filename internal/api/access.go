package api

import (
	"github.com/sbxdev/sbx/wire"
)

// privateTraffic reports whether a create request asks for private ports.
func privateTraffic(n *wire.SandboxNetwork) bool {
	return n != nil && n.AllowPublicTraffic != nil && !*n.AllowPublicTraffic
}

// networkOf describes a sandbox's network settings for its details.
func networkOf(trafficToken string) *wire.SandboxNetwork {
	public := trafficToken == ""
	return &wire.SandboxNetwork{AllowPublicTraffic: &public}
}
