package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/pgtest"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
)

// fleetKey is the cluster key of the test fleets.
const fleetKey = "fleet-test-cluster-key-0123456789"

// startFleet starts n nodes (n1, n2, ...) on one Postgres store, each with
// --advertise its own loopback address and the same cluster key. Every
// node's client uses the first node's admin key, the fleet's.
func startFleet(t *testing.T, n int, args ...string) (string, []*harness.Server) {
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
func freeAddr(t *testing.T) string {
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

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
