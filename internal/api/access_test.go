package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
)

// TestPrivatePorts checks the traffic token on a private sandbox's ports
// before anything is forwarded (there is no runtime: a request that passes
// the check finds no agent, 502), and that the agent's port is exempt.
func TestPrivatePorts(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	now := time.Now().UTC()
	token := strings.Repeat("ab", 32)
	sb := &store.Sandbox{ID: "cprivatesandbox00001", Template: "base", State: sandbox.StateRunning, CreatedAt: now, StartedAt: now, EnvdToken: "tok", TrafficToken: token}
	if err := s.db.PutSandbox(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	host := "Host: 3000-" + sb.ID + "." + testDomain
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
		msg    string
	}{
		{"host, no token", []string{host}, 403, "private"},
		{"headers, no token", []string{"E2b-Sandbox-Id: " + sb.ID, "E2b-Sandbox-Port: 3000"}, 403, "private"},
		{"wrong token", []string{host, "E2b-Traffic-Access-Token: " + strings.Repeat("ab", 31) + "aa"}, 403, "invalid traffic access token"},
		{"longer token", []string{host, "E2b-Traffic-Access-Token: " + token + "a"}, 403, "invalid traffic access token"},
		{"the envd token", []string{host, "E2b-Traffic-Access-Token: tok"}, 403, "invalid traffic access token"},
		{"the token", []string{host, "E2b-Traffic-Access-Token: " + token}, 502, "not reachable"},
		{"the agent's port needs none", []string{"Host: 49983-" + sb.ID + "." + testDomain}, 502, "not reachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, s.do(t, "GET", "/", "", "", tc.hdr...), tc.status, tc.msg)
		})
	}

	var got sandboxDetail
	decodeBody(t, s.do(t, "GET", "/sandboxes/"+sb.ID, s.plainKey, ""), 200, &got)
	if got.Network == nil || got.Network.AllowPublicTraffic == nil || *got.Network.AllowPublicTraffic {
		t.Errorf("details: network %+v, want allowPublicTraffic false", got.Network)
	}
	var conn sandboxBody
	decodeBody(t, s.do(t, "POST", "/sandboxes/"+sb.ID+"/connect", s.plainKey, ""), 200, &conn)
	if conn.TrafficAccessToken == nil || *conn.TrafficAccessToken != token {
		t.Errorf("connect: trafficAccessToken %v, want the token", conn.TrafficAccessToken)
	}
}

func TestHostPort(t *testing.T) {
	for _, tc := range []struct {
		addr string
		port int
		ok   bool
	}{
		{"port-3000:80", 3000, true},
		{portHost(65535) + ":80", 65535, true},
		{"port-3000", 3000, true},
		{"agent:80", 0, false},
		{"port-x:80", 0, false},
	} {
		port, err := hostPort(tc.addr)
		if (err == nil) != tc.ok || (tc.ok && port != tc.port) {
			t.Errorf("hostPort(%q) = %d, %v", tc.addr, port, err)
		}
	}
}
