package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/pgtest"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
)

// fleetKey is the cluster key of the test fleets.
const fleetKey = "fleet-test-cluster-key-0123456789"

// startFleet starts n nodes (n1, n2, ...) on one Postgres store, each with
// --advertise its own loopback address and the same cluster key. Every
// node's client uses the first node's admin key, the fleet's.
func startFleet(t testing.TB, n int, args ...string) (string, []*harness.Server) {
	dsn := pgtest.Postgres(t)
	t.Setenv("SBX_STORE", dsn)
	t.Setenv("SBX_CLUSTER_KEY", fleetKey)
	var nodes []*harness.Server
	for i := range n {
		addr := freeAddr(t)
		s := harness.Start(t, append([]string{"--node", fmt.Sprintf("n%d", i+1), "--listen", addr, "--advertise", "http://" + addr, "--internet=false"}, args...)...)
		if i > 0 {
			s.APIKey, s.Client = nodes[0].APIKey, client.New(s.URL, nodes[0].APIKey)
		}
		nodes = append(nodes, s)
	}
	return dsn, nodes
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestFleet runs three nodes with --advertise on one Postgres, driven
// through the first: creates land on several nodes; commands, files, a
// PTY and the API work through it for another node's sandbox; a forwarded
// request with a wrong cluster key is refused; and a node killed leaves
// the others serving, its sandboxes answering a clear error.
func TestFleet(t *testing.T) {
	dsn, nodes := startFleet(t, 3)
	ctx := ctxFor(t, 6*time.Minute)
	c := nodes[0].Client
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	byNode := map[string][]*client.Sandbox{}
	for range 6 {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := db.GetSandbox(ctx, sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		byNode[rec.Node] = append(byNode[rec.Node], sb)
	}
	if len(byNode) < 2 {
		t.Fatalf("6 creates through n1 landed on %d node(s): %v", len(byNode), keys(byNode))
	}
	t.Logf("placement: n1 %d, n2 %d, n3 %d", len(byNode["n1"]), len(byNode["n2"]), len(byNode["n3"]))
	for _, l := range strings.Split(nodes[0].Logs(), "\n") {
		if strings.Contains(l, "msg=placement") {
			t.Log(l)
		}
	}
	var far *client.Sandbox // one not on n1, n3's if any
	for _, n := range []string{"n3", "n2"} {
		if len(byNode[n]) > 0 {
			far = byNode[n][0]
			break
		}
	}
	if far == nil {
		t.Fatalf("no sandbox off n1: %v", keys(byNode))
	}

	// Every node lists the fleet's sandboxes, v2 paged across nodes.
	want := map[string]string{}
	for _, sbs := range byNode {
		for _, sb := range sbs {
			want[sb.ID] = client.StateRunning
		}
	}
	for _, s := range nodes {
		assertListed(t, ctx, s.Client, want)
	}
	seen := map[string]bool{}
	for _, page := range []struct {
		query string
		n     int
		next  string
	}{{"limit=4", 4, "4"}, {"limit=4&nextToken=4", 2, ""}} {
		var got []struct {
			SandboxID string `json:"sandboxID"`
		}
		h := fleetGet(t, ctx, nodes[2].URL+"/v2/sandboxes?"+page.query, nodes[0].APIKey, 200, &got)
		if len(got) != page.n || h.Get("X-Next-Token") != page.next || h.Get("X-Total-Running") != "6" {
			t.Fatalf("GET /v2/sandboxes?%s: %d sandboxes, next %q, running %q; want %d, %q, 6", page.query, len(got), h.Get("X-Next-Token"), h.Get("X-Total-Running"), page.n, page.next)
		}
		for _, g := range got {
			seen[g.SandboxID] = true
		}
	}
	if len(seen) != 6 {
		t.Fatalf("two pages listed %d distinct sandboxes, want 6", len(seen))
	}
	var v1 []json.RawMessage
	fleetGet(t, ctx, nodes[1].URL+"/sandboxes", nodes[0].APIKey, 200, &v1)
	if len(v1) != 6 {
		t.Fatalf("GET /sandboxes on n2: %d sandboxes, want 6", len(v1))
	}
	fleetGet(t, ctx, nodes[0].URL+"/v2/sandboxes?nextToken=x", nodes[0].APIKey, 400, nil)
	fleetGet(t, ctx, nodes[0].URL+"/v2/sandboxes?state=bogus", nodes[0].APIKey, 400, nil)
	fleetGet(t, ctx, nodes[0].URL+"/v2/sandboxes", harness.NewAPIKey(), 401, nil)
	// A create with a bad body is refused, whichever node it lands on.
	for _, body := range []string{"{", `{"timeout": "x"}`, `{"templateID": "../../etc"}`} {
		req, _ := http.NewRequestWithContext(ctx, "POST", nodes[0].URL+"/sandboxes", strings.NewReader(body))
		req.Header.Set("X-API-Key", nodes[0].APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("create with body %s: %d, want a 4xx", body, resp.StatusCode)
		}
	}
	big := bytes.Repeat([]byte(" "), 2<<20)
	req, _ := http.NewRequestWithContext(ctx, "POST", nodes[0].URL+"/sandboxes", bytes.NewReader(big))
	req.Header.Set("X-API-Key", nodes[0].APIKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 413 {
		t.Fatalf("create with a 2 MiB body: %v %v, want 413", resp, err)
	}

	// Every sandbox answers through n1, whichever node holds it.
	for n, sbs := range byNode {
		for _, sb := range sbs {
			if res := mustRun(t, ctx, sb, "echo "+n, nil); res.Stdout != n+"\n" {
				t.Fatalf("%s on %s: %q", sb.ID, n, res.Stdout)
			}
		}
	}
	// Files, both ways, and the API.
	payload := bytes.Repeat([]byte("fleet "), 100_000)
	if _, err := far.WriteFile(ctx, "/home/user/big", bytes.NewReader(payload), nil); err != nil {
		t.Fatal(err)
	}
	if got, err := far.ReadFile(ctx, "/home/user/big", nil); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("read back through n1: %d bytes, %v; want %d", len(got), err, len(payload))
	}
	if res := mustRun(t, ctx, far, "wc -c < /home/user/big", nil); strings.TrimSpace(res.Stdout) != fmt.Sprint(len(payload)) {
		t.Fatalf("wc: %q", res.Stdout)
	}
	if info, err := c.GetSandbox(ctx, far.ID); err != nil || info.SandboxID != far.ID {
		t.Fatalf("GET /sandboxes/%s through n1: %+v, %v", far.ID, info, err)
	}
	if err := c.SetTimeout(ctx, far.ID, 4*time.Minute); err != nil {
		t.Fatalf("set timeout through n1: %v", err)
	}
	// A PTY streams through n1.
	out := newWatcher()
	p, err := far.Start(ctx, client.ExecOptions{Cmd: "/bin/bash", Args: []string{"-l"}, PTY: &client.PTYSize{Cols: 80, Rows: 24}, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SendInput(ctx, []byte("tty; echo pty-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	out.await(t, "pty-42")
	if err := p.SendInput(ctx, []byte("exit 3\n")); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(ctx); err != nil || st.ExitCode != 3 {
		t.Fatalf("pty exit: %+v %v", st, err)
	}

	// A preview URL and the port headers reach far's port through n1,
	// over HTTP/1.1 and h2c.
	mustRun(t, ctx, far, "echo marker-"+far.ID+" > /tmp/marker", nil)
	if res := mustRun(t, ctx, far, `setsid nohup python3 -m http.server 8000 --directory /tmp >/dev/null 2>&1 &
for i in $(seq 200); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8000))' 2>/dev/null && exit 0; sleep 0.05; done; exit 1`, nil); res.ExitCode != 0 {
		t.Fatalf("http.server did not start: %+v", res)
	}
	var h2p http.Protocols
	h2p.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &h2p}}
	for _, tc := range []struct {
		name   string
		client *http.Client
		host   bool
	}{{"host", http.DefaultClient, true}, {"headers", http.DefaultClient, false}, {"h2c host", h2c, true}} {
		req, _ := http.NewRequestWithContext(ctx, "GET", nodes[0].URL+"/marker", nil)
		if tc.host {
			req.Host = far.Host(8000)
		} else {
			req.Header.Set("E2b-Sandbox-Id", far.ID)
			req.Header.Set("E2b-Sandbox-Port", "8000")
		}
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatalf("preview (%s): %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "marker-"+far.ID+"\n" {
			t.Fatalf("preview (%s) through n1: %d %q (%s)", tc.name, resp.StatusCode, b, resp.Proto)
		}
	}

	// A snapshot taken through n1 is on far's node; a create from it,
	// through n1, lands there; its delete, through n1, is done there.
	farRec, err := db.GetSandbox(ctx, far.ID)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := c.CreateSnapshot(ctx, far.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := db.GetSnapshot(ctx, sn.SnapshotID); err != nil || rec.Node != farRec.Node {
		t.Fatalf("snapshot of %s (on %s): %+v, %v", far.ID, farRec.Node, rec, err)
	}
	for range 2 {
		copied, err := c.CreateSandbox(ctx, client.CreateOptions{Template: sn.SnapshotID, Timeout: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if rec, err := db.GetSandbox(ctx, copied.ID); err != nil || rec.Node != farRec.Node {
			t.Fatalf("create from a snapshot on %s: %+v, %v", farRec.Node, rec, err)
		}
		if res := mustRun(t, ctx, copied, "cat /tmp/marker", nil); res.Stdout != "marker-"+far.ID+"\n" {
			t.Fatalf("create from the snapshot: %q", res.Stdout)
		}
		if err := c.KillSandbox(ctx, copied.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteSnapshot(ctx, sn.SnapshotID); err != nil {
		t.Fatalf("delete snapshot through n1: %v", err)
	}
	if _, err := db.GetSnapshot(ctx, sn.SnapshotID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("snapshot after delete: %v", err)
	}

	// A forwarded request is refused without the right cluster key, on
	// any node, and the client's own key is checked by the owner.
	for _, key := range []string{"wrong", "", fleetKey + "x"} {
		for _, s := range nodes {
			req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/sandboxes/"+far.ID, nil)
			req.Header.Set("X-API-Key", nodes[0].APIKey)
			req.Header.Set("Sbx-Cluster-Key", key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 403 {
				t.Fatalf("cluster key %q to %s: %d, want 403", key, s.URL, resp.StatusCode)
			}
		}
	}
	if _, err := client.New(nodes[0].URL, harness.NewAPIKey()).GetSandbox(ctx, far.ID); !isStatus(err, 401) {
		t.Fatalf("unknown API key through n1: %v, want 401", err)
	}
	if _, err := c.GetSandbox(ctx, "nosuchsandbox"); !isNotFound(err) {
		t.Fatalf("unknown sandbox: %v, want 404", err)
	}

	// n2 dies: n1 and n3 go on serving theirs, n2's answer an error, and
	// creates land on the living.
	nodes[1].Crash()
	for n, sbs := range byNode {
		for _, sb := range sbs {
			if n == "n2" {
				actx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := sb.Run(actx, "true", nil)
				late := actx.Err()
				cancel()
				if err == nil || late != nil {
					t.Fatalf("n2's sandbox %s after n2 died: %v, want a prompt error", sb.ID, err)
				}
				if _, err := c.GetSandbox(ctx, sb.ID); !isStatus(err, 503) {
					t.Fatalf("GET of n2's sandbox %s after n2 died: %v, want 503", sb.ID, err)
				}
				continue
			}
			if res := mustRun(t, ctx, sb, "echo "+n, nil); res.Stdout != n+"\n" {
				t.Fatalf("%s on %s after n2 died: %q", sb.ID, n, res.Stdout)
			}
		}
	}
	var v1after []json.RawMessage
	fleetGet(t, ctx, nodes[0].URL+"/sandboxes", nodes[0].APIKey, 200, &v1after)
	if len(v1after) != 6-len(byNode["n2"]) {
		t.Fatalf("GET /sandboxes after n2 died: %d sandboxes, want %d", len(v1after), 6-len(byNode["n2"]))
	}
	for range 3 {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
		if err != nil {
			t.Fatalf("create after n2 died: %v", err)
		}
		if rec, err := db.GetSandbox(ctx, sb.ID); err != nil || rec.Node == "n2" {
			t.Fatalf("created after n2 died: %+v, %v", rec, err)
		}
		mustRun(t, ctx, sb, "true", nil)
	}
}

// fleetGet GETs url with an API key, checks the status and decodes the
// body into out (when not nil), returning the headers.
func fleetGet(t *testing.T, ctx context.Context, url, key string, status int, out any) http.Header {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, b, status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, b)
		}
	}
	return resp.Header
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestFleetFull checks placement past a full node: with room for one
// sandbox per node, two creates through n1 land on both nodes (the second
// passed over the full one), and a third answers 503, the e2b SDKs'
// ServiceBusyError.
func TestFleetFull(t *testing.T) {
	dsn, nodes := startFleet(t, 2, "--capacity-memory-mb", "600", "--memory-mb", "512")
	ctx := ctxFor(t, 3*time.Minute)
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	on := map[string]bool{}
	for range 2 {
		sb, err := nodes[0].Client.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := db.GetSandbox(ctx, sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		on[rec.Node] = true
	}
	if !on["n1"] || !on["n2"] {
		t.Fatalf("two creates with room for one per node landed on %v", keys(on))
	}
	for _, s := range nodes {
		if _, err := s.Client.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute}); !isStatus(err, 503) || !strings.Contains(err.Error(), "capacity") {
			t.Fatalf("create on a full fleet through %s: %v, want 503 out of capacity", s.URL, err)
		}
	}
}
