package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/wire"
)

func TestLifecycleParams(t *testing.T) {
	for _, tc := range []struct {
		body string
		want sandbox.Lifecycle
		msg  string
	}{
		{`{}`, sandbox.Lifecycle{}, ""},
		{`{"autoPause":false}`, sandbox.Lifecycle{OnTimeout: "kill"}, ""},
		{`{"autoPause":true}`, sandbox.Lifecycle{OnTimeout: "pause"}, ""},
		{`{"autoPause":true,"autoPauseMemory":false}`, sandbox.Lifecycle{OnTimeout: "pause", TimeoutFilesOnly: true}, ""},
		{`{"autoPause":true,"autoResume":{"enabled":true}}`, sandbox.Lifecycle{OnTimeout: "pause", AutoResume: true}, ""},
		{`{"lifecycle":"persistent"}`, sandbox.Lifecycle{Persistent: true}, ""},
		{`{"lifecycle":"ephemeral","idlePause":90}`, sandbox.Lifecycle{IdlePause: 90 * time.Second}, ""},
		{`{"lifecycle":"persistent","autoPauseMemory":true}`, sandbox.Lifecycle{Persistent: true}, ""},
		{`{"lifecycle":"forever"}`, sandbox.Lifecycle{}, "lifecycle must be"},
		{`{"autoPauseMemory":false}`, sandbox.Lifecycle{}, "autoPauseMemory needs autoPause"},
		{`{"idlePause":-1}`, sandbox.Lifecycle{}, "must not be negative"},
	} {
		var req wire.NewSandbox
		if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
			t.Fatal(err)
		}
		got, err := lifecycleParams(&req)
		if tc.msg != "" {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(errdefs.Message(err), tc.msg) {
				t.Errorf("%s: err %v, want invalid argument %q", tc.body, err, tc.msg)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, %v; want %+v", tc.body, got, err, tc.want)
		}
	}
}
