package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

func TestNodes(t *testing.T) {
	ts := newTestServer(t, sandbox.Config{})
	ts.SetReady(true)
	ctx := context.Background()

	// Without a membership source the list is empty.
	var none []wire.Node
	decodeBody(t, ts.do(t, "GET", "/nodes", ts.adminKey, ""), http.StatusOK, &none)
	if none == nil || len(none) != 0 {
		t.Fatalf("no nodes: %#v", none)
	}

	ts.cfg.Nodes = ts.db
	now := time.Now().UTC()
	for _, n := range []*store.Node{
		{ID: "a", StartedAt: now.Add(-time.Minute), RenewedAt: now, LeaseUntil: now.Add(15 * time.Second), Version: "v1",
			Machine: store.NodeMachine{CPUCount: 8, MemoryTotalBytes: 32 << 30, HugePagesTotal: 10, HugePagesFree: 4, CPUArchitecture: "amd64",
				Disks: []store.NodeDisk{{MountPoint: "/var/lib/sbx", TotalBytes: 100}}}},
		{ID: "b", StartedAt: now.Add(-time.Hour), RenewedAt: now.Add(-time.Minute), LeaseUntil: now.Add(-45 * time.Second)},
	} {
		if err := ts.db.RenewNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, sb := range []*store.Sandbox{
		{ID: "s1", Node: "a", State: "running", CPUs: 1.5, MemoryMB: 512},
		{ID: "s2", Node: "a", State: "creating", CPUs: 1, MemoryMB: 256},
	} {
		sb.Template, sb.Runtime = "base", "runc"
		if err := ts.db.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}

	var list []wire.Node
	decodeBody(t, ts.do(t, "GET", "/nodes", ts.adminKey, ""), http.StatusOK, &list)
	if len(list) != 2 || list[0].ID != "a" || list[1].ID != "b" {
		t.Fatalf("GET /nodes = %+v", list)
	}
	a, b := list[0], list[1]
	if a.Status != "ready" || a.SandboxCount != 1 || a.SandboxStartingCount != 1 || a.Metrics.AllocatedCPU != 3 ||
		a.Metrics.AllocatedMemoryBytes != 768<<20 || a.Metrics.CPUCount != 8 || a.Metrics.HugePagesUsed != 6 ||
		len(a.Metrics.Disks) != 1 || a.MachineInfo.CPUArchitecture != "amd64" || a.ClusterID != clusterID {
		t.Errorf("node a = %+v", a)
	}
	if b.Status != "unhealthy" || !b.StatusChangedAt.Equal(now.Add(-45*time.Second)) || b.SandboxCount != 0 || b.Metrics.Disks == nil {
		t.Errorf("node b = %+v", b)
	}

	// The detail decodes strictly as E2B's NodeDetail.
	w := ts.do(t, "GET", "/nodes/a", ts.adminKey, "")
	var d wire.NodeDetail
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if w.Code != http.StatusOK || dec.Decode(&d) != nil || d.ID != "a" || d.Status != "ready" || d.SandboxCount != 1 {
		t.Fatalf("GET /nodes/a: %d %s", w.Code, w.Body)
	}

	for _, tc := range []struct {
		target, key string
		status      int
		msg         string
	}{
		{"/nodes/nope", ts.adminKey, 404, `node "nope" not found`},
		{"/nodes/..%2F..%2Fetc", ts.adminKey, 404, `node "../../etc" not found`},
		{"/nodes", ts.plainKey, 403, "this needs an admin API key"},
		{"/nodes/a", ts.plainKey, 403, "this needs an admin API key"},
	} {
		wantError(t, ts.do(t, "GET", tc.target, tc.key, ""), tc.status, tc.msg)
	}
	if w := ts.do(t, "GET", "/nodes", "", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("GET /nodes without a key: %d", w.Code)
	}
	if w := ts.do(t, "GET", "/nodes", "e2b_0000000000000000000000000000000000000000", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("GET /nodes with a wrong key: %d", w.Code)
	}

	// A node that released its lease is gone; one declared lost, lost.
	for _, id := range []string{"c", "d"} {
		if err := ts.db.RenewNode(ctx, &store.Node{ID: id, StartedAt: now.Add(-time.Hour), RenewedAt: now.Add(-time.Minute), LeaseUntil: now.Add(-45 * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.db.ReleaseNode(ctx, "c", now.Add(-30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ok, err := ts.db.DeclareNodeLost(ctx, "d", "a", now.Add(-45*time.Second), now.Add(-20*time.Second)); !ok || err != nil {
		t.Fatalf("declare d lost: %v, %v", ok, err)
	}
	for id, want := range map[string]string{"a": "ready", "b": "unhealthy", "c": "gone", "d": "lost"} {
		var d wire.NodeDetail
		decodeBody(t, ts.do(t, "GET", "/nodes/"+id, ts.adminKey, ""), http.StatusOK, &d)
		if d.Status != want {
			t.Errorf("node %s: status %q, want %q", id, d.Status, want)
		}
	}

	// DELETE /nodes/{id}: refused for a live node and one holding
	// sandboxes that are not settled, done for the others.
	if err := ts.db.PutSandbox(ctx, &store.Sandbox{ID: "s3", Node: "d", State: "running", Template: "base", Runtime: "runc"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		node, key string
		status    int
		msg       string
	}{
		{"a", ts.adminKey, 409, "node a is live"},
		{"d", ts.adminKey, 409, "not settled"},
		{"nope", ts.adminKey, 404, `node "nope" not found`},
		{"b", ts.plainKey, 403, "this needs an admin API key"},
	} {
		wantError(t, ts.do(t, "DELETE", "/nodes/"+tc.node, tc.key, ""), tc.status, tc.msg)
	}
	for _, id := range []string{"b", "c"} {
		if w := ts.do(t, "DELETE", "/nodes/"+id, ts.adminKey, ""); w.Code != http.StatusNoContent {
			t.Fatalf("DELETE /nodes/%s: %d %s", id, w.Code, w.Body)
		}
		wantError(t, ts.do(t, "GET", "/nodes/"+id, ts.adminKey, ""), 404, "not found")
	}
}

// fakeDrainer records the drains and status changes asked of it.
type fakeDrainer struct{ calls []string }

func (f *fakeDrainer) Drain(ctx context.Context, node string) (*wire.NodeDrain, error) {
	f.calls = append(f.calls, "drain "+node)
	return &wire.NodeDrain{Node: node, Moved: []wire.DrainedSandbox{{SandboxID: "s1", Node: "b", State: "running"}}}, nil
}

func (f *fakeDrainer) SetStatus(ctx context.Context, node, status string) error {
	f.calls = append(f.calls, status+" "+node)
	return nil
}

func TestNodeDrainRoutes(t *testing.T) {
	ts := newTestServer(t, sandbox.Config{})
	ts.SetReady(true)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := ts.db.RenewNode(ctx, &store.Node{ID: "a", StartedAt: now, RenewedAt: now, LeaseUntil: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	ts.cfg.Nodes = ts.db
	// Not a fleet node: nothing to drain to.
	wantError(t, ts.do(t, "POST", "/nodes/a/drain", ts.adminKey, ""), 409, "not a node of a fleet")
	wantError(t, ts.do(t, "POST", "/nodes/a", ts.adminKey, `{"status":"draining"}`), 409, "not a node of a fleet")
	d := &fakeDrainer{}
	ts.cfg.Drainer = d
	for _, tc := range []struct {
		target, key, body string
		status            int
		msg               string
	}{
		{"/nodes/a", ts.adminKey, `{"status":"bogus"}`, 400, `invalid status "bogus"`},
		{"/nodes/a", ts.adminKey, `{"status":"standby"}`, 400, "reported by the fleet"},
		{"/nodes/a", ts.adminKey, `{}`, 400, `invalid status ""`},
		{"/nodes/a", ts.adminKey, `{`, 400, "malformed JSON"},
		{"/nodes/a", ts.adminKey, ``, 400, "request body is empty"},
		{"/nodes/a", ts.adminKey, `{"status":"draining","clusterID":"11111111-1111-1111-1111-111111111111"}`, 404, "cluster"},
		{"/nodes/a", ts.plainKey, `{"status":"draining"}`, 403, "this needs an admin API key"},
		{"/nodes/a/drain", ts.plainKey, ``, 403, "this needs an admin API key"},
	} {
		wantError(t, ts.do(t, "POST", tc.target, tc.key, tc.body), tc.status, tc.msg)
	}
	if len(d.calls) != 0 {
		t.Fatalf("refused requests reached the drainer: %v", d.calls)
	}
	if w := ts.do(t, "POST", "/nodes/a", ts.adminKey, `{"status":"draining"}`); w.Code != http.StatusNoContent {
		t.Fatalf("set draining: %d %s", w.Code, w.Body)
	}
	var res wire.NodeDrain
	decodeBody(t, ts.do(t, "POST", "/nodes/a/drain", ts.adminKey, ""), http.StatusOK, &res)
	if res.Node != "a" || len(res.Moved) != 1 || res.Moved[0].Node != "b" {
		t.Fatalf("drain answer: %+v", res)
	}
	if got := fmt.Sprint(d.calls); got != "[draining a drain a]" {
		t.Fatalf("drainer calls: %s", got)
	}
	// A node marked draining shows so, since then.
	at := now.Add(-time.Second).Truncate(time.Millisecond)
	if err := ts.db.SetNodeDraining(ctx, "a", at); err != nil {
		t.Fatal(err)
	}
	var n wire.NodeDetail
	decodeBody(t, ts.do(t, "GET", "/nodes/a", ts.adminKey, ""), http.StatusOK, &n)
	if n.Status != "draining" || !n.StatusChangedAt.Equal(at) {
		t.Fatalf("draining node: %s since %s, want draining since %s", n.Status, n.StatusChangedAt, at)
	}
}
