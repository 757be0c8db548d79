package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/sbxdev/sbx/wire"
)

// Node is one sbx serve of the fleet sharing the server's database, built
// from the server's [wire.Node]; its own JSON is what `sbx node ls --json`
// prints. Listing nodes needs an admin key.
type Node struct {
	ID string `json:"id"`
	// Status is "ready" while the node's lease holds; "gone" once it
	// released it on a clean stop; "unhealthy" once it ran out, and
	// "lost" when the fleet then declared it lost. StatusChangedAt is
	// when it became so.
	Status          string    `json:"status"`
	StatusChangedAt time.Time `json:"statusChangedAt"`
	// Sandboxes counts the node's running sandboxes, Starting those
	// being created or resumed.
	Sandboxes int64 `json:"sandboxes"`
	Starting  int64 `json:"starting"`
	// AllocatedCPUs and AllocatedMemoryBytes sum those sandboxes' limits;
	// CPUs and MemoryBytes are the machine's.
	AllocatedCPUs        int64 `json:"allocatedCpus"`
	AllocatedMemoryBytes int64 `json:"allocatedMemoryBytes"`
	CPUs                 int64 `json:"cpus"`
	MemoryBytes          int64 `json:"memoryBytes"`
	// CPUPercent and MemoryUsedBytes are the machine's load at the
	// node's last renewal.
	CPUPercent      int64  `json:"cpuPercent"`
	MemoryUsedBytes int64  `json:"memoryUsedBytes"`
	Version         string `json:"version"`
	Commit          string `json:"commit"`
}

func nodeFrom(n wire.Node) Node {
	return Node{
		ID: n.ID, Status: n.Status, StatusChangedAt: n.StatusChangedAt, Sandboxes: n.SandboxCount, Starting: n.SandboxStartingCount,
		AllocatedCPUs: n.Metrics.AllocatedCPU, AllocatedMemoryBytes: n.Metrics.AllocatedMemoryBytes,
		CPUs: n.Metrics.CPUCount, MemoryBytes: n.Metrics.MemoryTotalBytes, CPUPercent: n.Metrics.CPUPercent,
		MemoryUsedBytes: n.Metrics.MemoryUsedBytes, Version: n.Version, Commit: n.Commit,
	}
}

// ListNodes returns every node that has used the server's database.
func (c *Client) ListNodes(ctx context.Context) ([]Node, error) {
	var list []wire.Node
	if _, err := c.do(ctx, http.MethodGet, "/nodes", nil, nil, &list); err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(list))
	for _, n := range list {
		out = append(out, nodeFrom(n))
	}
	return out, nil
}

// GetNode returns node id.
func (c *Client) GetNode(ctx context.Context, id string) (*Node, error) {
	if id == "" {
		return nil, errNoID
	}
	var d wire.NodeDetail
	if _, err := c.do(ctx, http.MethodGet, "/nodes/"+url.PathEscape(id), nil, nil, &d); err != nil {
		return nil, err
	}
	n := nodeFrom(wire.Node{
		ID: d.ID, Status: d.Status, StatusChangedAt: d.StatusChangedAt, SandboxCount: d.SandboxCount, Metrics: d.Metrics,
		Version: d.Version, Commit: d.Commit,
	})
	return &n, nil
}

// RemoveNode removes node id's record from the fleet (`sbx node rm`). The
// server refuses (409) while the node is live or holds sandboxes that are
// not settled.
func (c *Client) RemoveNode(ctx context.Context, id string) error {
	if id == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/nodes/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// DrainNode drains node id and waits until it is done: the node takes no
// more placements, its persistent sandboxes move to other nodes (paused
// there if they were paused, running if they ran) and its ephemeral ones
// are left to end at their timeout. It returns what became of each.
func (c *Client) DrainNode(ctx context.Context, id string) (*wire.NodeDrain, error) {
	if id == "" {
		return nil, errNoID
	}
	var out wire.NodeDrain
	if _, err := c.do(ctx, http.MethodPost, "/nodes/"+url.PathEscape(id)+"/drain", nil, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetNodeStatus sets node id's status: "draining" (a drain in the
// background) or "ready" (it takes placements again).
func (c *Client) SetNodeStatus(ctx context.Context, id, status string) error {
	if id == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodPost, "/nodes/"+url.PathEscape(id), nil, wire.NodeStatusChange{Status: status}, nil)
	return err
}
