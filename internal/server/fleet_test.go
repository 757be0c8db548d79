package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/proxy"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
)

func TestCheckFleet(t *testing.T) {
	pg := "postgres://sbx@db/sbx"
	key := "0123456789abcdef"
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{Store: pg, Node: "n1", Advertise: "http://10.0.0.2:49982", ClusterKey: key}, true},
		{Config{Store: pg, Node: "host-a.example", Advertise: "https://n1.example.com/", ClusterKey: key}, true},
		{Config{Store: pg, Node: "n1"}, true},                                              // a shared store, outside the fleet
		{Config{Store: "/var/lib/sbx/sbx.db", Node: "any/name"}, true},                     // SQLite: no node cgroups
		{Config{Store: pg, Node: "../x", Advertise: "http://a:1", ClusterKey: key}, false}, // a node name that traverses
		{Config{Store: pg, Node: "a b"}, false},
		{Config{Store: pg, ClusterKey: key}, false},                                             // a key alone
		{Config{Store: "/var/lib/sbx/sbx.db", Advertise: "http://a:1", ClusterKey: key}, false}, // SQLite
		{Config{Store: pg, Advertise: "http://a:1"}, false},                                     // no key
		{Config{Store: pg, Advertise: "http://a:1", ClusterKey: "short"}, false},
		{Config{Store: pg, Advertise: "a:1", ClusterKey: key}, false},
		{Config{Store: pg, Advertise: "ftp://a:1", ClusterKey: key}, false},
		{Config{Store: pg, Advertise: "http://a:1/api", ClusterKey: key}, false},
	} {
		if err := checkFleet(tc.cfg); (err == nil) != tc.ok {
			t.Errorf("checkFleet(%+v) = %v, want ok %v", tc.cfg, err, tc.ok)
		}
	}
}

// TestFleetRouterKey checks the handling of forwarded requests on a real
// store: a wrong, empty or repeated cluster key is refused; the right one
// is removed before the local handler serves the request, which is not
// forwarded again; and a request for an unknown sandbox stays here.
func TestFleetRouterKey(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A sandbox of another node, n2, whose address is a closed port.
	if err := db.ForNode("n2").PutSandbox(ctx, &store.Sandbox{ID: "far", Template: "base", Runtime: "runc", State: "running"}); err != nil {
		t.Fatal(err)
	}
	if err := db.RenewNode(ctx, &store.Node{ID: "n2", LeaseUntil: time.Now().Add(time.Minute), Advertise: "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	var seen http.Header
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		io.WriteString(w, "local")
	})
	noRoute := func(*http.Request) (proxy.Target, bool) { return proxy.Target{}, false }
	f := newFleetRouter("n1", "the-cluster-key-0123", db, local, noRoute, slog.New(slog.DiscardHandler))
	do := func(path string, keys ...string) (int, string) {
		r := httptest.NewRequest("GET", path, nil)
		for _, k := range keys {
			r.Header.Add(clusterKeyHeader, k)
		}
		w := httptest.NewRecorder()
		f.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	for _, keys := range [][]string{{"wrong"}, {""}, {"the-cluster-key-0123", "the-cluster-key-0123"}, {"the-cluster-key-012"}} {
		if code, _ := do("/sandboxes/far", keys...); code != 403 {
			t.Errorf("keys %q: %d, want 403", keys, code)
		}
	}
	seen = nil
	if code, body := do("/sandboxes/far", "the-cluster-key-0123"); code != 200 || body != "local" || seen == nil || seen.Get(clusterKeyHeader) != "" {
		t.Fatalf("forwarded with the key: %d %q, header seen %q", code, body, seen.Get(clusterKeyHeader))
	}
	if code, body := do("/sandboxes/nosuch"); code != 200 || body != "local" {
		t.Fatalf("unknown sandbox: %d %q, want it served here", code, body)
	}
	// n2 does not answer: a prompt 503, not a hang.
	if code, body := do("/sandboxes/far/timeout"); code != 503 || !strings.Contains(body, "n2") {
		t.Fatalf("sandbox of a node that does not answer: %d %s", code, body)
	}
	// Its lease runs out: 503 naming it.
	if err := db.RenewNode(ctx, &store.Node{ID: "n2", LeaseUntil: time.Now().Add(-time.Second), Advertise: "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if code, body := do("/v2/sandboxes/far/logs"); code != 503 || !strings.Contains(body, "down") {
		t.Fatalf("sandbox of a lost node: %d %s", code, body)
	}
}

func TestSandboxOf(t *testing.T) {
	f := &fleetRouter{route: func(r *http.Request) (proxy.Target, bool) {
		if id := r.Header.Get("E2b-Sandbox-Id"); id != "" {
			return proxy.Target{SandboxID: id}, true
		}
		return proxy.Target{}, false
	}}
	for _, tc := range []struct{ method, path, header, want string }{
		{"GET", "/sandboxes/abc", "", "abc"},
		{"POST", "/sandboxes/abc/timeout", "", "abc"},
		{"POST", "/v2/sandboxes/abc/connect", "", "abc"},
		{"GET", "/sandboxes/metrics", "", ""},
		{"GET", "/sandboxes", "", ""},
		{"GET", "/v2/sandboxes", "", ""},
		{"GET", "/templates/abc", "", ""},
		{"POST", "/process.Process/Start", "xyz", "xyz"},
		{"GET", "/dashboard/api/sandboxes/abc/terminal", "", "abc"},
		{"PUT", "/dashboard/api/sandboxes/abc/files/content", "", "abc"},
		{"GET", "/dashboard/api/sandboxes/stream", "", ""},
		{"GET", "/dashboard/api/session", "", ""},
		{"GET", "/dashboard/", "", ""},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.header != "" {
			r.Header.Set("E2b-Sandbox-Id", tc.header)
		}
		if got := f.sandboxOf(r); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

// fakeBoxes records what the router asks of the Manager.
type fakeBoxes struct{ calls []string }

func (b *fakeBoxes) Adopt(ctx context.Context, id string) (*store.Sandbox, error) {
	b.calls = append(b.calls, "adopt "+id)
	return &store.Sandbox{ID: id, State: "paused"}, nil
}

func (b *fakeBoxes) Resume(ctx context.Context, id string, opts sandbox.ResumeOptions) (*store.Sandbox, bool, error) {
	b.calls = append(b.calls, fmt.Sprintf("resume %s %s", id, *opts.Timeout))
	return &store.Sandbox{ID: id, State: "running"}, true, nil
}

func (b *fakeBoxes) Recover(ctx context.Context, id string) (*sandbox.Recovered, error) {
	b.calls = append(b.calls, "recover "+id)
	return &sandbox.Recovered{Sandbox: &store.Sandbox{ID: id, State: "paused"}, CopyAt: time.Now(), Copy: "paused image"}, nil
}

func (b *fakeBoxes) SnapshotPublished(ctx context.Context, id string) (bool, error) {
	return false, nil
}

// TestFleetRouterTakeOver: a resume of a paused sandbox whose node is down
// is taken over here, only for a caller of the sandbox's team and only for
// resume and connect; the take-over route needs the cluster key; a status
// change for an unknown node is the local API's to refuse.
func TestFleetRouterTakeOver(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.ForNode("n2").PutSandbox(ctx, &store.Sandbox{ID: "far", Template: "base", Runtime: "runc", State: "paused"}); err != nil {
		t.Fatal(err)
	}
	for _, sb := range []*store.Sandbox{
		{ID: "lostp", Template: "base", Runtime: "runc", State: "running", Life: store.SandboxLife{Persistent: true}},
		{ID: "loste", Template: "base", Runtime: "runc", State: "running"},
	} {
		if err := db.ForNode("n2").PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.RenewNode(ctx, &store.Node{ID: "n2", LeaseUntil: time.Now().Add(-time.Second), Advertise: "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "local") })
	noRoute := func(*http.Request) (proxy.Target, bool) { return proxy.Target{}, false }
	f := newFleetRouter("n1", "the-cluster-key-0123", db, local, noRoute, slog.New(slog.DiscardHandler))
	boxes := &fakeBoxes{}
	f.boxes = boxes
	f.authorize = func(r *http.Request, team string) bool {
		return r.Header.Get("X-API-Key") == "good" && team == store.DefaultTeamID
	}
	do := func(method, path, key, cluster, body string) (int, string) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("X-API-Key", key)
		if cluster != "" {
			r.Header.Set(clusterKeyHeader, cluster)
		}
		w := httptest.NewRecorder()
		f.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	if code, body := do("POST", "/sandboxes/far/resume", "bad", "", "{}"); code != 503 || len(boxes.calls) != 0 {
		t.Fatalf("resume with a key of no team: %d %s, calls %v; want the owner's 503 and no take-over", code, body, boxes.calls)
	}
	if code, _ := do("GET", "/sandboxes/far", "good", "", ""); code != 503 || len(boxes.calls) != 0 {
		t.Fatalf("GET of the sandbox: %d, calls %v; want 503 and no take-over", code, boxes.calls)
	}
	if code, body := do("POST", "/v2/sandboxes/far/connect", "good", "", "{}"); code != 200 || body != "local" || fmt.Sprint(boxes.calls) != "[adopt far]" {
		t.Fatalf("connect of a lost node's paused sandbox: %d %s, calls %v", code, body, boxes.calls)
	}
	boxes.calls = nil
	// A persistent sandbox that ran on the lost node comes back from its
	// last copy; an ephemeral one does not.
	if code, _ := do("POST", "/sandboxes/loste/connect", "good", "", "{}"); code != 503 || len(boxes.calls) != 0 {
		t.Fatalf("connect of a lost node's ephemeral sandbox: %d, calls %v; want 503 and nothing recovered", code, boxes.calls)
	}
	if code, body := do("POST", "/sandboxes/lostp/connect", "good", "", "{}"); code != 200 || body != "local" || fmt.Sprint(boxes.calls) != "[recover lostp]" {
		t.Fatalf("connect of a lost node's persistent sandbox: %d %s, calls %v", code, body, boxes.calls)
	}
	boxes.calls = nil
	if code, _ := do("POST", "/fleet/adopt/far", "", "", `{"resume":true}`); code != 200 || len(boxes.calls) != 0 {
		t.Fatalf("take-over route without the cluster key: %d, calls %v; want the local handler", code, boxes.calls)
	}
	code, body := do("POST", "/fleet/adopt/far", "", "the-cluster-key-0123", `{"resume":true,"timeoutMs":1500}`)
	if code != 200 || !strings.Contains(body, `"node":"n1"`) || !strings.Contains(body, `"state":"running"`) || fmt.Sprint(boxes.calls) != "[adopt far resume far 1.5s]" {
		t.Fatalf("take-over route: %d %s, calls %v", code, body, boxes.calls)
	}
	for _, b := range []string{`{`, `{"timeoutMs":-1}`} {
		if code, _ := do("POST", "/fleet/adopt/far", "", "the-cluster-key-0123", b); code != 400 {
			t.Errorf("take-over with body %s: %d, want 400", b, code)
		}
	}
	if code, _ := do("POST", "/fleet/nope", "", "the-cluster-key-0123", `{}`); code != 404 {
		t.Errorf("unknown node-to-node route: %d, want 404", code)
	}
	if code, body := do("POST", "/nodes/nope/drain", "good", "", ""); code != 200 || body != "local" {
		t.Errorf("drain of an unknown node: %d %s, want the local API's answer", code, body)
	}
	if code, _ := do("POST", "/nodes/n2/drain", "good", "", ""); code != 503 {
		t.Errorf("drain of a node that is down: %d, want 503", code)
	}
}
