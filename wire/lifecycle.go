package wire

import "time"

// PauseRequest is the body of POST /sandboxes/{id}/pause.
type PauseRequest struct {
	// Memory false keeps files only; absent or true keeps memory too.
	Memory *bool `json:"memory,omitempty"`
}

// ResumeRequest is the body of POST /sandboxes/{id}/resume.
type ResumeRequest struct {
	Timeout   *int64 `json:"timeout,omitempty"`
	AutoPause *bool  `json:"autoPause,omitempty"`
	// Memory false ignores a saved memory image.
	Memory *bool `json:"memory,omitempty"`
}

// SnapshotRequest is the body of POST /sandboxes/{id}/snapshots.
type SnapshotRequest struct {
	Name string `json:"name,omitempty"`
}

// Snapshot is a snapshot as POST /sandboxes/{id}/snapshots and GET
// /snapshots return it.
type Snapshot struct {
	SnapshotID string   `json:"snapshotID"`
	Names      []string `json:"names"`
	// SandboxID, TemplateID (what the snapshot stands on), Kind ("files"
	// or "memory"), CreatedAt and SizeBytes are sbx extensions.
	SandboxID  string    `json:"sandboxID"`
	TemplateID string    `json:"templateID"`
	Kind       string    `json:"kind"`
	CreatedAt  time.Time `json:"createdAt"`
	SizeBytes  int64     `json:"sizeBytes"`
}

// ForkRequest is the body of POST /sandboxes/{id}/fork.
type ForkRequest struct {
	Count   *int   `json:"count,omitempty"`
	Timeout *int64 `json:"timeout,omitempty"`
}

// ForkResult is one element of a fork's response: a new sandbox, or why
// that copy failed.
type ForkResult struct {
	Sandbox *Sandbox `json:"sandbox,omitempty"`
	Error   *Error   `json:"error,omitempty"`
}
