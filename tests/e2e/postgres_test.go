package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/pgtest"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestPostgresStore runs sbx serve on a Postgres store: the lifecycle
// works as on SQLite, the records are in Postgres (owned by the server's
// node), and a restart on the same database finds them again.
func TestPostgresStore(t *testing.T) {
	dsn := pgtest.Postgres(t)
	srv := harness.Start(t, "--store", dsn, "--node", "n1")
	ctx := ctxFor(t, 4*time.Minute)
	c := srv.Client

	run, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, run, "echo running > /home/user/state", nil)
	paused, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute, Lifecycle: client.Lifecycle{Persistent: true}})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, paused, "echo paused > /home/user/state", nil)
	if err := paused.Pause(ctx, nil); err != nil {
		t.Fatal(err)
	}
	mustState(t, ctx, c, paused.ID, client.StatePaused, wantPauseKind())
	resumed, err := c.Resume(ctx, paused.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, resumed, "cat /home/user/state", nil); res.Stdout != "paused\n" {
		t.Fatalf("after resume: %q", res.Stdout)
	}
	if err := resumed.Pause(ctx, nil); err != nil {
		t.Fatal(err)
	}
	killed, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.KillSandbox(ctx, killed.ID); err != nil {
		t.Fatal(err)
	}
	assertListed(t, ctx, c, map[string]string{run.ID: client.StateRunning, paused.ID: client.StatePaused})

	// The records are Postgres's, and the data directory has no SQLite
	// database.
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for id, state := range map[string]store.State{run.ID: "running", paused.ID: "paused"} {
		rec, err := db.GetSandbox(ctx, id)
		if err != nil || rec.State != state || rec.Node != "n1" {
			t.Fatalf("stored %s: %+v, %v; want %s on node n1", id, rec, err, state)
		}
	}
	if _, err := db.GetSandbox(ctx, killed.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("killed sandbox's record: %v, want it gone", err)
	}
	if _, err := os.Stat(filepath.Join(srv.DataDir, "sbx.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a SQLite database in the data dir: %v", err)
	}

	srv.Restart()
	assertListed(t, ctx, c, map[string]string{run.ID: client.StateRunning, paused.ID: client.StatePaused})
	h, err := c.ConnectSandbox(ctx, run.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, h, "cat /home/user/state", nil); res.Stdout != "running\n" {
		t.Fatalf("running sandbox after restart: %q", res.Stdout)
	}
	h, err = c.Resume(ctx, paused.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, h, "cat /home/user/state", nil); res.Stdout != "paused\n" {
		t.Fatalf("paused sandbox after restart: %q", res.Stdout)
	}
	for _, id := range []string{run.ID, paused.ID} {
		if err := c.KillSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	assertListed(t, ctx, c, map[string]string{})
}

// TestPostgresTwoNodes runs two servers with different --node names on one
// Postgres: each sees and acts on its own sandboxes only, and one's restart
// (whose reconcile fails or removes what it cannot find running) leaves
// the other's sandboxes untouched and running.
func TestPostgresTwoNodes(t *testing.T) {
	dsn := pgtest.Postgres(t)
	s1 := harness.Start(t, "--store", dsn, "--node", "n1")
	// The second one is given its store by the environment.
	t.Setenv("SBX_STORE", dsn)
	s2 := harness.Start(t, "--node", "n2")
	// The admin key is the database's: the first server made it.
	s2.APIKey, s2.Client = s1.APIKey, client.New(s2.URL, s1.APIKey)
	ctx := ctxFor(t, 4*time.Minute)

	// A key made on one node works on the other, and stops working there
	// once revoked.
	k, err := s1.Client.CreateKey(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	other := client.New(s2.URL, k.Key)
	awaitKey(t, ctx, other, true)
	// Nodes are an admin's to list.
	if _, err := other.ListNodes(ctx); !isStatus(err, 403) {
		t.Fatalf("GET /nodes with a plain key: %v, want 403", err)
	}
	if _, err := client.New(s1.URL, harness.NewAPIKey()).ListNodes(ctx); !isStatus(err, 401) {
		t.Fatalf("GET /nodes with an unknown key: %v, want 401", err)
	}
	if err := s1.Client.DeleteKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	awaitKey(t, ctx, other, false)

	var mine [2]*client.Sandbox
	for i, s := range []*harness.Server{s1, s2} {
		sb, err := s.Client.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		mustRun(t, ctx, sb, "echo "+sb.ID+" > /home/user/who", nil)
		mine[i] = sb
	}
	a, b := mine[0], mine[1]
	assertListed(t, ctx, s1.Client, map[string]string{a.ID: client.StateRunning})
	assertListed(t, ctx, s2.Client, map[string]string{b.ID: client.StateRunning})
	// Another node's sandbox is not this node's to show or act on.
	if _, err := s1.Client.GetSandbox(ctx, b.ID); !isNotFound(err) {
		t.Fatalf("n1 GET of n2's sandbox: %v, want 404", err)
	}
	if err := s1.Client.KillSandbox(ctx, b.ID); !isNotFound(err) {
		t.Fatalf("n1 kill of n2's sandbox: %v, want 404", err)
	}

	// Both nodes are members, each with its own sandbox, on both nodes'
	// API and in the CLI.
	for _, s := range []*harness.Server{s1, s2} {
		assertNode(t, ctx, s.Client, "n1", "ready", 1)
		assertNode(t, ctx, s.Client, "n2", "ready", 1)
	}
	if _, err := s1.Client.GetNode(ctx, "nope"); !isNotFound(err) {
		t.Fatalf("GET /nodes/nope: %v, want 404", err)
	}
	out, errOut, code := s1.CLI(ctx, nil, "node", "ls")
	if code != 0 || !strings.HasPrefix(out, "ID ") || strings.Count(out, " ready ") != 2 || !strings.Contains(out, "n1 ") || !strings.Contains(out, "n2 ") {
		t.Fatalf("sbx node ls: %d\n%s%s", code, out, errOut)
	}

	// A node that stops gives its lease up at once: it is gone.
	s1.Stop()
	assertNode(t, ctx, s2.Client, "n1", "gone", 1)
	s1.StartAgain()
	assertNode(t, ctx, s2.Client, "n1", "ready", 1)
	assertListed(t, ctx, s1.Client, map[string]string{a.ID: client.StateRunning})
	assertListed(t, ctx, s2.Client, map[string]string{b.ID: client.StateRunning})
	for _, tc := range []struct {
		s  *harness.Server
		sb *client.Sandbox
	}{{s1, a}, {s2, b}} {
		h, err := tc.s.Client.ConnectSandbox(ctx, tc.sb.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res := mustRun(t, ctx, h, "cat /home/user/who", nil); res.Stdout != tc.sb.ID+"\n" {
			t.Fatalf("%s after n1's restart: %q", tc.sb.ID, res.Stdout)
		}
	}
	// One that crashes loses it once its lease runs out (15 s).
	s2.Crash()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := s1.Client.GetNode(ctx, "n2")
		if err != nil {
			t.Fatal(err)
		}
		if n.Status == "unhealthy" {
			if since := time.Since(n.StatusChangedAt); since > 20*time.Second {
				t.Fatalf("n2 unhealthy since %v ago, before it crashed", since)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 still %s 30 s after it crashed", n.Status)
		}
		time.Sleep(250 * time.Millisecond)
	}
	s2.StartAgain()
	assertNode(t, ctx, s1.Client, "n2", "ready", 1)
	assertListed(t, ctx, s1.Client, map[string]string{a.ID: client.StateRunning})
	assertListed(t, ctx, s2.Client, map[string]string{b.ID: client.StateRunning})
	if err := s1.Client.KillSandbox(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s2.Client.KillSandbox(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
}

// awaitKey waits up to 10 s (the nodes reload keys every 2 s) for c's key
// to be accepted (valid) or refused with a 401.
func awaitKey(t *testing.T, ctx context.Context, c *client.Client, valid bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.ListSandboxes(ctx, nil)
		var apiErr *client.APIError
		refused := errors.As(err, &apiErr) && apiErr.StatusCode == 401
		if err != nil && !refused {
			t.Fatal(err)
		}
		if valid != refused {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key still %v after 10 s: %v", map[bool]string{true: "refused", false: "accepted"}[valid], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertListed checks that c lists exactly the sandboxes of want (id to
// state), running and paused ones.
func assertListed(t *testing.T, ctx context.Context, c *client.Client, want map[string]string) {
	t.Helper()
	list, err := c.ListSandboxes(ctx, &client.ListOptions{States: []string{client.StateRunning, client.StatePaused}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, sb := range list {
		got[sb.SandboxID] = sb.State
	}
	if len(got) != len(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	for id, st := range want {
		if got[id] != st {
			t.Fatalf("listed %v, want %v", got, want)
		}
	}
}

// assertNode checks what c shows of node id, listed and alone.
func assertNode(t *testing.T, ctx context.Context, c *client.Client, id, status string, sandboxes int64) {
	t.Helper()
	list, err := c.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var listed *client.Node
	for i := range list {
		if list[i].ID == id {
			listed = &list[i]
		}
	}
	n, err := c.GetNode(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range []*client.Node{listed, n} {
		if got == nil || got.Status != status || got.Sandboxes != sandboxes || got.CPUs <= 0 || got.MemoryBytes <= 0 || got.AllocatedMemoryBytes <= 0 {
			t.Fatalf("node %s: %+v (listed %d nodes); want %s with %d sandboxes", id, got, len(list), status, sandboxes)
		}
	}
}

// isStatus reports whether err is the client's error for an HTTP status.
func isStatus(err error, code int) bool {
	var apiErr *client.APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode == code
}

// isNotFound reports whether err is the client's error for a 404.
func isNotFound(err error) bool {
	var apiErr *client.APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode == 404
}
