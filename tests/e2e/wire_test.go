package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// TestWireStrict decodes what a real server answers on the main routes
// into package wire's types with unknown fields refused: a field the
// server sends that wire lacks fails here, which keeps wire's golden files
// honest about the API.
func TestWireStrict(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	call := func(method, path string, body any, wantStatus int, out any) {
		t.Helper()
		var r io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			if err != nil {
				t.Fatal(err)
			}
			r = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, r)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-API-Key", srv.APIKey)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s: status %d, want %d\n%s", method, path, resp.StatusCode, wantStatus, raw)
		}
		if out != nil {
			decodeStrict(t, string(raw), out)
		}
	}
	ptr := func(v int64) *int64 { return &v }

	var health wire.Health
	call("GET", "/health", nil, 200, &health)
	var sb wire.Sandbox
	call("POST", "/v2/sandboxes", wire.NewSandbox{TemplateID: "base", Timeout: ptr(300), Metadata: map[string]string{"k": "v"},
		Network: &wire.SandboxNetwork{AllowOut: []string{"1.1.1.1"}}}, 201, &sb)
	if sb.SandboxID == "" || sb.EnvdAccessToken == "" {
		t.Fatalf("created %+v", sb)
	}
	var list []wire.ListedSandbox
	call("GET", "/v2/sandboxes", nil, 200, &list)
	call("GET", "/sandboxes", nil, 200, &list)
	var detail wire.SandboxDetail
	call("GET", "/sandboxes/"+sb.SandboxID, nil, 200, &detail)
	if detail.SandboxID != sb.SandboxID || detail.Metadata["k"] != "v" || detail.Network == nil || len(detail.Network.AllowOut) != 1 {
		t.Errorf("detail %+v", detail)
	}
	var conn wire.Sandbox
	call("POST", "/sandboxes/"+sb.SandboxID+"/connect", wire.ConnectRequest{Timeout: ptr(300)}, 200, &conn)

	var snap wire.Snapshot
	call("POST", "/sandboxes/"+sb.SandboxID+"/snapshots", wire.SnapshotRequest{Name: "wire-" + strings.ToLower(sb.SandboxID[:6])}, 201, &snap)
	var snaps []wire.Snapshot
	call("GET", "/snapshots?sandboxID="+sb.SandboxID, nil, 200, &snaps)
	var forks []wire.ForkResult
	n := 1
	call("POST", "/sandboxes/"+sb.SandboxID+"/fork", wire.ForkRequest{Count: &n, Timeout: ptr(300)}, 201, &forks)
	if len(forks) != 1 || forks[0].Sandbox == nil {
		t.Errorf("fork %+v", forks)
	}

	call("POST", "/sandboxes/"+sb.SandboxID+"/pause", wire.PauseRequest{}, 204, nil)
	var resumed wire.Sandbox
	call("POST", "/sandboxes/"+sb.SandboxID+"/resume", wire.ResumeRequest{}, 201, &resumed)

	var templates []wire.Template
	call("GET", "/templates", nil, 200, &templates)
	var td wire.TemplateDetail
	call("GET", "/sbx/v1/templates/base", nil, 200, &td)
	var alias wire.TemplateAlias
	call("GET", "/templates/aliases/base", nil, 200, &alias)
	var key wire.Key
	call("POST", "/sbx/v1/keys", wire.NewKey{Name: "wire"}, 201, &key)
	var keys []wire.Key
	call("GET", "/sbx/v1/keys", nil, 200, &keys)
	var e wire.Error
	call("GET", "/sandboxes/nope", nil, 404, &e)
	if e.Code != 404 || e.Message == "" {
		t.Errorf("error body %+v", e)
	}

	// Clean up what the test made (the harness kills sandboxes).
	c := srv.Client
	for _, f := range forks {
		if f.Sandbox != nil {
			c.KillSandbox(context.WithoutCancel(ctx), f.Sandbox.SandboxID)
		}
	}
	if err := c.KillSandbox(ctx, sb.SandboxID); err != nil {
		t.Error(err)
	}
	if err := c.DeleteSnapshot(ctx, snap.SnapshotID); err != nil {
		t.Errorf("delete snapshot: %v", err)
	}
}
