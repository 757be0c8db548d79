package bundle

import (
	"fmt"

	"github.com/sbxdev/sbx/internal/sandbox"
)

// OCIState is the part of an OCI runtime's `state` output (runc's and
// runsc's alike) the drivers read.
type OCIState struct {
	Status string `json:"status"` // created, running, paused, stopped
	Pid    int    `json:"pid"`
}

// BoxState maps an OCI runtime's state of an existing box to what the
// sandbox Manager is told. created means the runtime's init waits for a
// start that run --detach always sends: seen only while a start is in
// progress or after it failed, so nothing runs. An unknown status is an
// error rather than a guess.
func (s OCIState) BoxState() (sandbox.BoxState, error) {
	bs := sandbox.BoxState{Exists: true}
	switch s.Status {
	case "running":
		bs.Running, bs.Pid = true, s.Pid
	case "paused":
		bs.Running, bs.Paused, bs.Pid = true, true, s.Pid
	case "created", "stopped":
	default:
		return sandbox.BoxState{}, fmt.Errorf("unknown OCI status %q", s.Status)
	}
	return bs, nil
}
