package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/pgtest"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// netnsPort is the port every node listens on in its own namespace.
const netnsPort = "49982"

// startNetnsFleet starts n nodes (n1, n2, ...), each sbx serve in a
// network namespace of its own with its own address on a bridge the test
// made, sharing one Postgres database reached over TCP through the bridge
// (so that a node whose link is down loses the store too) and one cluster
// key. It returns the database's unix-socket URL (the test's own way in),
// the namespaces and the nodes; every node's client uses n1's admin key.
func startNetnsFleet(t testing.TB, n int, args ...string) (*store.DB, *harness.Netns, []*harness.Server) {
	dsn := pgtest.Postgres(t)
	ns := harness.NewNetns(t, n)
	tcp := ns.Postgres(t, dsn)
	var nodes []*harness.Server
	for i, h := range ns.Hosts {
		addr := net.JoinHostPort(h.Addr.String(), netnsPort)
		s := harness.StartIn(t, h.Name, append([]string{"--node", fmt.Sprintf("n%d", i+1), "--listen", addr, "--advertise", "http://" + addr,
			"--store", tcp, "--cluster-key", fleetKey, "--internet=false"}, args...)...)
		if i > 0 {
			s.APIKey, s.Client = nodes[0].APIKey, client.New(s.URL, nodes[0].APIKey)
		}
		nodes = append(nodes, s)
	}
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, ns, nodes
}

// spreadOne creates one sandbox per node through n1 (the fleet placing by
// the best of all its nodes, --placement-k 3) and returns them by node.
func spreadOne(t testing.TB, ctx context.Context, db *store.DB, c *client.Client, n int) map[string]*client.Sandbox {
	t.Helper()
	by := map[string]*client.Sandbox{}
	for range n {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := db.GetSandbox(ctx, sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if by[rec.Node] != nil {
			t.Fatalf("two of %d creates landed on %s, want one per node", n, rec.Node)
		}
		by[rec.Node] = sb
	}
	return by
}

// TestFleetNetns is the fleet on three hosts: three nodes, each in its own
// network namespace with its own address, on one Postgres. The e2b npm
// SDK driving n1 creates sandboxes that land on all three, and commands,
// files, PTYs and watches work for each; with the Go SDK, commands and
// files work for every sandbox through every node; a pause and a kill of
// one sandbox sent at once to two other nodes leave one consistent state;
// and a rolling restart of every node loses no sandbox.
func TestFleetNetns(t *testing.T) {
	dir := filepath.Join(harness.RepoRoot(), "tests", "e2b-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		t.Fatal("the e2b npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run scripts/setup.sh")
	}
	db, ns, nodes := startNetnsFleet(t, 3, "--placement-k", "3")
	ctx := ctxFor(t, 12*time.Minute)

	// Every node advertises its own namespace's address.
	for i, h := range ns.Hosts {
		rec, err := db.GetNode(ctx, fmt.Sprintf("n%d", i+1))
		if want := "http://" + net.JoinHostPort(h.Addr.String(), netnsPort); err != nil || rec.Advertise != want {
			t.Fatalf("node n%d: %+v, %v; want advertise %s", i+1, rec, err, want)
		}
	}

	// The e2b SDK through n1: six creates on all three nodes.
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "--test-force-exit", "fleet.spec.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+nodes[0].URL, "SBX_API_KEY="+nodes[0].APIKey, "SBX_FLEET_SPREAD=3")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test fleet.spec.js output:\n%s", out)
	if err != nil {
		t.Fatalf("fleet.spec.js failed: %v", err)
	}

	// The Go SDK: one sandbox per node; commands and files for each,
	// through each node.
	by := spreadOne(t, ctx, db, nodes[0].Client, 3)
	for owner, sb := range by {
		for i, s := range nodes {
			via, err := s.Client.ConnectSandbox(ctx, sb.ID, nil)
			if err != nil {
				t.Fatalf("connect to %s's sandbox through n%d: %v", owner, i+1, err)
			}
			if res := mustRun(t, ctx, via, "echo $((6*7)) on "+owner, nil); res.Stdout != "42 on "+owner+"\n" {
				t.Fatalf("%s's sandbox through n%d: %q", owner, i+1, res.Stdout)
			}
			body := bytes.Repeat([]byte(fmt.Sprintf("n%d→%s ", i+1, owner)), 50_000)
			path := fmt.Sprintf("/home/user/via-n%d", i+1)
			if _, err := via.WriteFile(ctx, path, bytes.NewReader(body), nil); err != nil {
				t.Fatal(err)
			}
			if got, err := via.ReadFile(ctx, path, nil); err != nil || !bytes.Equal(got, body) {
				t.Fatalf("read back %s through n%d: %d bytes, %v; want %d", path, i+1, len(got), err, len(body))
			}
		}
	}

	// Two nodes racing on n3's sandbox: a pause through n1 and a kill
	// through n2 at once. The owner serves both, one after the other:
	// whichever order, the sandbox ends killed (a kill of a paused
	// sandbox kills it; a pause of a killed one is refused), and every
	// node says so.
	victim := by["n3"]
	var wg sync.WaitGroup
	var pauseErr, killErr error
	wg.Add(2)
	go func() { defer wg.Done(); pauseErr = nodes[0].Client.Pause(ctx, victim.ID, nil) }()
	go func() { defer wg.Done(); killErr = nodes[1].Client.KillSandbox(ctx, victim.ID) }()
	wg.Wait()
	t.Logf("race on %s: pause %v, kill %v", victim.ID, pauseErr, killErr)
	if killErr != nil {
		t.Fatalf("kill racing a pause: %v", killErr)
	}
	if pauseErr != nil && !isNotFound(pauseErr) && !isStatus(pauseErr, 409) {
		t.Fatalf("pause racing a kill: %v, want success, 404 or 409", pauseErr)
	}
	for i, s := range nodes {
		if _, err := s.Client.GetSandbox(ctx, victim.ID); !isNotFound(err) {
			t.Fatalf("GET of the raced sandbox through n%d: %v, want 404", i+1, err)
		}
	}
	if _, err := db.GetSandbox(ctx, victim.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the raced sandbox's record: %v, want it gone", err)
	}

	// A rolling restart: each node stops cleanly (its lease released: gone,
	// not lost) and starts again; no sandbox is lost.
	for i, s := range nodes {
		s.Stop()
		if rec, err := db.GetNode(ctx, fmt.Sprintf("n%d", i+1)); err != nil || rec.ReleasedAt.IsZero() || !rec.LostAt.IsZero() {
			t.Fatalf("n%d stopped: %+v, %v; want released, not lost", i+1, rec, err)
		}
		s.StartAgain()
		if i > 0 {
			s.APIKey, s.Client = nodes[0].APIKey, client.New(s.URL, nodes[0].APIKey)
		}
	}
	for _, owner := range []string{"n1", "n2"} {
		sb := by[owner]
		if res := mustRun(t, ctx, sb, "cat /home/user/via-n3 | wc -c", nil); strings.TrimSpace(res.Stdout) == "0" {
			t.Fatalf("%s's sandbox after the rolling restart: %q", owner, res.Stdout)
		}
		if rec, err := db.GetSandbox(ctx, sb.ID); err != nil || rec.State != "running" {
			t.Fatalf("%s's sandbox after the rolling restart: %+v, %v", owner, rec, err)
		}
	}
	for i := range nodes {
		if rec, err := db.GetNode(ctx, fmt.Sprintf("n%d", i+1)); err != nil || !rec.LostAt.IsZero() || !rec.LeaseUntil.After(time.Now()) {
			t.Fatalf("n%d after the rolling restart: %+v, %v", i+1, rec, err)
		}
	}
}

// awaitFailedEvent waits, polling the events API through c, for sandbox
// id's failed event, and returns it. It lists the team's failed events.
func awaitFailedEvent(t testing.TB, ctx context.Context, c *client.Client, id string, within time.Duration) client.SandboxEvent {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		evs, err := c.ListEvents(ctx, &client.EventListOptions{Types: []string{wire.EventFailed}, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.SandboxID == id {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed event for %s within %s", id, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFleetNodeLoss SIGKILLs a node of three: the others keep serving; its
// sandbox is reported failed with the reason "node n3 lost", in the store
// and as an event, within the lease period and a scan; the lost node's
// record is removed with `sbx node rm` (refused for a live node); and the
// node, started again, kills its lost sandbox's box before it serves.
func TestFleetNodeLoss(t *testing.T) {
	db, _, nodes := startNetnsFleet(t, 3, "--placement-k", "3")
	ctx := ctxFor(t, 8*time.Minute)
	c := nodes[0].Client
	by := spreadOne(t, ctx, db, c, 3)
	lost := by["n3"]
	mustRun(t, ctx, lost, "true", nil)

	killed := time.Now()
	nodes[2].Crash()
	ev := awaitFailedEvent(t, ctx, c, lost.ID, 30*time.Second)
	detect := time.Since(killed)
	t.Logf("n3 SIGKILLed: its sandbox reported failed after %s", detect.Round(100*time.Millisecond))
	if ev.EventData == nil || ev.EventData.Reason != "node n3 lost" || ev.EventData.PreviousState != "running" {
		t.Fatalf("failed event: %+v", ev.EventData)
	}
	// The lease runs 15 s past the last renewal (every 5 s), and a scan
	// comes every 2 s.
	if detect > 18*time.Second {
		t.Fatalf("loss reported %s after the kill, want within the lease and a scan", detect)
	}
	if rec, err := db.GetSandbox(ctx, lost.ID); err != nil || rec.State != "failed" || rec.Error != "node n3 lost" {
		t.Fatalf("the lost sandbox's record: %+v, %v", rec, err)
	}
	n3, err := c.GetNode(ctx, "n3")
	if err != nil || n3.Status != "lost" {
		t.Fatalf("GET /nodes/n3: %+v, %v; want lost", n3, err)
	}

	// The others keep serving, through either node; creates land on them.
	for _, owner := range []string{"n1", "n2"} {
		via, err := nodes[1].Client.ConnectSandbox(ctx, by[owner].ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res := mustRun(t, ctx, via, "echo still "+owner, nil); res.Stdout != "still "+owner+"\n" {
			t.Fatalf("%s's sandbox after n3's loss: %q", owner, res.Stdout)
		}
	}
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := db.GetSandbox(ctx, sb.ID); err != nil || rec.Node == "n3" {
		t.Fatalf("create after n3's loss: %+v, %v", rec, err)
	}

	// sbx node rm: refused for a live node, done for the lost one.
	if _, stderr, code := nodes[0].CLI(ctx, nil, "node", "rm", "n2"); code == 0 || !strings.Contains(stderr, "is live") {
		t.Fatalf("node rm n2 (live): exit %d, %s", code, stderr)
	}
	if _, stderr, code := nodes[0].CLI(ctx, nil, "node", "rm", "n3"); code != 0 {
		t.Fatalf("node rm n3 (lost): exit %d, %s", code, stderr)
	}
	if _, err := c.GetNode(ctx, "n3"); !isNotFound(err) {
		t.Fatalf("GET /nodes/n3 after rm: %v, want 404", err)
	}

	// n3 back: before it serves, the box of its lost sandbox is killed.
	boxDir := filepath.Join(nodes[2].DataDir, "sandboxes", lost.ID)
	if _, err := os.Stat(boxDir); err != nil {
		t.Fatalf("the lost sandbox's files on n3 before its restart: %v", err)
	}
	nodes[2].StartAgain()
	nodes[2].APIKey, nodes[2].Client = nodes[0].APIKey, client.New(nodes[2].URL, nodes[0].APIKey)
	if _, err := os.Stat(boxDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the lost sandbox's files on n3 once it serves again: %v, want them gone", err)
	}
	if !strings.Contains(nodes[2].Logs(), "killed the box of a sandbox the fleet ended") {
		t.Fatal("n3 did not log killing the lost sandbox's box")
	}
	if rec, err := db.GetSandbox(ctx, lost.ID); err != nil || rec.State != "failed" {
		t.Fatalf("the lost sandbox's record once n3 is back: %+v, %v; want it failed still", rec, err)
	}
	if n3, err := c.GetNode(ctx, "n3"); err != nil || n3.Status != "ready" {
		t.Fatalf("GET /nodes/n3 once back: %+v, %v", n3, err)
	}
}

// TestFleetPartition cuts a node's link (its veth down): it can reach
// neither the store nor the other nodes. The others declare it lost and
// report its sandbox failed; the node, unable to renew for a lease
// period, is fenced (it answers 503, even to a client beside it); once
// its link is back it learns it was lost and kills the box, leaving the
// record as the fleet wrote it.
func TestFleetPartition(t *testing.T) {
	db, ns, nodes := startNetnsFleet(t, 3, "--placement-k", "3")
	ctx := ctxFor(t, 8*time.Minute)
	c := nodes[0].Client
	by := spreadOne(t, ctx, db, c, 3)
	cut := by["n2"]
	mustRun(t, ctx, cut, "true", nil)

	ns.Hosts[1].LinkDown(t)
	linkUp := sync.OnceFunc(func() { ns.Hosts[1].LinkUp(t) })
	t.Cleanup(linkUp)
	ev := awaitFailedEvent(t, ctx, c, cut.ID, 30*time.Second)
	if ev.EventData == nil || ev.EventData.Reason != "node n2 lost" {
		t.Fatalf("failed event: %+v", ev.EventData)
	}
	// n2 is fenced: a client in its own namespace is refused.
	cli := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+ns.Hosts[1].Name, "--", filepath.Join(nodes[1].Bin, "sbx"), "ls")
	cli.Env = append(os.Environ(), "SBX_URL="+nodes[1].URL, "SBX_API_KEY="+nodes[0].APIKey)
	if out, err := cli.CombinedOutput(); err == nil || !strings.Contains(string(out), "cannot renew its lease") {
		t.Fatalf("sbx ls on the cut-off n2: %v, %s; want it fenced", err, out)
	}
	// The others serve on.
	if res := mustRun(t, ctx, by["n3"], "echo on", nil); res.Stdout != "on\n" {
		t.Fatalf("n3's sandbox while n2 is cut off: %q", res.Stdout)
	}

	linkUp()
	boxDir := filepath.Join(nodes[1].DataDir, "sandboxes", cut.ID)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(nodes[1].Logs(), "killed the box of a sandbox the fleet ended") {
		if time.Now().After(deadline) {
			t.Fatal("n2, back, did not kill the box of its sandbox the fleet ended")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(boxDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the ended sandbox's files on n2: %v, want them gone", err)
	}
	if rec, err := db.GetSandbox(ctx, cut.ID); err != nil || rec.State != "failed" || rec.Error != "node n2 lost" {
		t.Fatalf("the ended sandbox's record once n2 is back: %+v, %v", rec, err)
	}
	// n2 rejoins and serves again.
	deadline = time.Now().Add(30 * time.Second)
	for {
		n2, err := c.GetNode(ctx, "n2")
		if err == nil && n2.Status == "ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 after its link came back: %+v, %v; want ready", n2, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	via, err := nodes[1].Client.ConnectSandbox(ctx, by["n1"].ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, via, "echo back", nil); res.Stdout != "back\n" {
		t.Fatalf("n1's sandbox through n2, back: %q", res.Stdout)
	}
}
