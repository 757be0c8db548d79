package sandbox

import (
	"context"
	"net"

	"github.com/sbxdev/sbx/internal/network"
)

// The Manager's narrower parts, each what one kind of caller needs: the
// server starts and reports the warm pools, the data plane (internal/proxy,
// the dashboard, template builds) reaches running sandboxes, the API reads
// volume mounts and egress policies. Each is a view of the same Manager.

// WarmPools is the Manager's warm pools (the default one and those of
// templates with a pool of their own). Get it from [Manager.Warm].
type WarmPools struct{ m *Manager }

// Warm returns the Manager's warm pools.
func (m *Manager) Warm() WarmPools { return WarmPools{m} }

// DataPlane is what reaches a running sandbox: its agent, its ports and
// its log. Get it from [Manager.DataPlane].
type DataPlane struct{ m *Manager }

// DataPlane returns the Manager's data-plane part.
func (m *Manager) DataPlane() DataPlane { return DataPlane{m} }

// DialAgent connects to sandbox id's agent socket.
func (d DataPlane) DialAgent(ctx context.Context, id string) (net.Conn, error) {
	return d.m.dialAgent(ctx, id)
}

// VolumeUse is what the API reads of sandboxes' volume mounts. Get it from
// [Manager.Volumes].
type VolumeUse struct{ m *Manager }

// Volumes returns the Manager's volume-mount part.
func (m *Manager) Volumes() VolumeUse { return VolumeUse{m} }

// NetworkUse is sandboxes' egress policies, read and replaced live. Get it
// from [Manager.Network].
type NetworkUse struct{ m *Manager }

// Network returns the Manager's egress-policy part.
func (m *Manager) Network() NetworkUse { return NetworkUse{m} }

// Policy returns sandbox id's egress policy; ok is false when the sandbox
// has no network (or the server none).
func (n NetworkUse) Policy(id string) (p network.Policy, ok bool) { return n.m.networkPolicy(id) }

// RemoteUse is what a fleet node does with other nodes' sandboxes through
// the object store: publish a paused one, take one over (Adopt, Recover),
// free what it held of one that moved, and kill at start the boxes of
// those the fleet ended or moved while it was away. Get it from
// [Manager.Remote].
type RemoteUse struct{ m *Manager }

// Remote returns the Manager's fleet part.
func (m *Manager) Remote() RemoteUse { return RemoteUse{m} }
