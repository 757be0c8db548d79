package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// TestPrivatePortsDetails checks that a private sandbox's details and
// connect answer say so (internal/server tests the proxy's check of its
// traffic token).
func TestPrivatePortsDetails(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	now := time.Now().UTC()
	token := strings.Repeat("ab", 32)
	sb := &store.Sandbox{ID: "cprivatesandbox00001", Template: "base", State: sandbox.StateRunning, CreatedAt: now, StartedAt: now, EnvdToken: "tok", TrafficToken: token}
	if err := s.db.PutSandbox(context.Background(), sb); err != nil {
		t.Fatal(err)
	}

	var got wire.SandboxDetail
	decodeBody(t, s.do(t, "GET", "/sandboxes/"+sb.ID, s.plainKey, ""), 200, &got)
	if got.Network == nil || got.Network.AllowPublicTraffic == nil || *got.Network.AllowPublicTraffic {
		t.Errorf("details: network %+v, want allowPublicTraffic false", got.Network)
	}
	var conn wire.Sandbox
	decodeBody(t, s.do(t, "POST", "/sandboxes/"+sb.ID+"/connect", s.plainKey, ""), 200, &conn)
	if conn.TrafficAccessToken == nil || *conn.TrafficAccessToken != token {
		t.Errorf("connect: trafficAccessToken %v, want the token", conn.TrafficAccessToken)
	}
}
