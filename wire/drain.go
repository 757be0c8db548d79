package wire

import "time"

// NodeDrain is the answer to POST /nodes/{nodeID}/drain (sbx's own): what
// the drain of a node did with each of its sandboxes.
type NodeDrain struct {
	// Node is the drained node.
	Node string `json:"node"`
	// Moved are the persistent sandboxes now on other nodes.
	Moved []DrainedSandbox `json:"moved"`
	// Failed are the persistent sandboxes that could not move, with why;
	// they stay on the drained node as they were.
	Failed []DrainedSandbox `json:"failed"`
	// Remaining are the ephemeral sandboxes, left to end at their
	// timeout (EndAt) on the drained node.
	Remaining []DrainedSandbox `json:"remaining"`
}

// DrainedSandbox is one sandbox of a drain.
type DrainedSandbox struct {
	SandboxID string `json:"sandboxID"`
	// Node is where a moved sandbox is now.
	Node string `json:"node,omitempty"`
	// State is its state now.
	State string `json:"state,omitempty"`
	// EndAt is when a remaining sandbox ends.
	EndAt *time.Time `json:"endAt,omitempty"`
	// Error says why a failed one did not move.
	Error string `json:"error,omitempty"`
}

// NodeStatusChange is the body of POST /nodes/{nodeID}: status "draining"
// drains the node (in the background), "ready" has it take placements
// again.
type NodeStatusChange struct {
	ClusterID string `json:"clusterID,omitempty"`
	Status    string `json:"status"`
}
