package bundle

import (
	"testing"

	"github.com/sbxdev/sbx/internal/sandbox"
)

func TestOCIStateBoxState(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   sandbox.BoxState
		ok     bool
	}{
		{"running", sandbox.BoxState{Exists: true, Running: true, Pid: 42}, true},
		{"paused", sandbox.BoxState{Exists: true, Running: true, Paused: true, Pid: 42}, true},
		{"created", sandbox.BoxState{Exists: true}, true},
		{"stopped", sandbox.BoxState{Exists: true}, true},
		{"creating", sandbox.BoxState{}, false},
		{"", sandbox.BoxState{}, false},
	} {
		got, err := OCIState{Status: tc.status, Pid: 42}.BoxState()
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("OCIState{%q}.BoxState() = %+v, %v; want %+v (ok %v)", tc.status, got, err, tc.want, tc.ok)
		}
	}
}
