package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// TestFleetObjectStore runs two nodes sharing Postgres and a bucket
// (SeaweedFS on loopback):
//
//   - a snapshot taken on n1 goes to the bucket, and a sandbox made from it
//     on n2 fetches it there, with its files; n1 cannot delete it while n2's
//     sandbox stands on it;
//   - two persistent sandboxes paused on n1 (with memory, and files only) go
//     to the bucket; with n1 stopped, a resume and a connect through n2 take
//     them over: their files are intact, and on runsc a process's memory too;
//   - a persistent sandbox left running on n1, with a snapshot, comes back
//     on n2 from the snapshot through a connect, what it wrote since lost;
//   - with n1 back, a drain of n2 (asked of n1) moves both, the running one
//     running and the paused one paused, leaves an ephemeral sandbox to its
//     timeout, marks n2 draining so creates pass it over, and n2 takes
//     placements again when set ready.
func TestFleetObjectStore(t *testing.T) {
	objURL := s3Store(t, fmt.Sprintf("fleet-%d", os.Getpid()))
	dsn, nodes := startFleet(t, 2, "--object-store", objURL)
	n1, n2 := nodes[0], nodes[1]
	ctx := ctxFor(t, 12*time.Minute)
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	nodeOf := func(id string) string {
		t.Helper()
		rec, err := db.GetSandbox(ctx, id)
		if err != nil {
			t.Fatalf("record of %s: %v", id, err)
		}
		return rec.Node
	}

	// Snapshots.
	src := createOn(t, ctx, n1, `{"templateID":"base","timeout":300}`)
	mustRun(t, ctx, src, "echo snap-$((6*7)) > /home/user/snap.txt", nil)
	sn, err := n1.Client.CreateSnapshot(ctx, src.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if logLines(n1, "snapshot published", "snapshot_id="+sn.SnapshotID) != 1 {
		t.Fatalf("n1 did not publish snapshot %s:\n%s", sn.SnapshotID, n1.Logs())
	}
	from := createOn(t, ctx, n2, `{"templateID":"`+sn.SnapshotID+`","timeout":300}`)
	if got := nodeOf(from.ID); got != "n2" {
		t.Fatalf("sandbox from the snapshot is on %q, want n2", got)
	}
	if res := mustRun(t, ctx, from, "cat /home/user/snap.txt", nil); res.Stdout != "snap-42\n" {
		t.Fatalf("snapshot's file on n2: %q", res.Stdout)
	}
	if logLines(n2, "snapshot fetched", "snapshot_id="+sn.SnapshotID) != 1 {
		t.Fatalf("n2 did not fetch snapshot %s:\n%s", sn.SnapshotID, n2.Logs())
	}
	if err := n1.Client.DeleteSnapshot(ctx, sn.SnapshotID); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("delete of a snapshot n2's sandbox stands on: %v, want a conflict", err)
	}
	for _, sb := range []*client.Sandbox{from, src} {
		if err := sb.Kill(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := n1.Client.DeleteSnapshot(ctx, sn.SnapshotID); err != nil {
		t.Fatalf("delete of the snapshot once unused: %v", err)
	}

	// Paused sandboxes, taken over while their node is down.
	const persistent = `{"templateID":"base","timeout":300,"lifecycle":"persistent"}`
	withMem := createOn(t, ctx, n1, persistent)
	filesOnly := createOn(t, ctx, n1, persistent)
	sum := func(sb *client.Sandbox) string {
		t.Helper()
		return mustRun(t, ctx, sb, "sha256sum /home/user/big | cut -c1-64", nil).Stdout
	}
	sums := map[string]string{}
	for _, sb := range []*client.Sandbox{withMem, filesOnly} {
		mustRun(t, ctx, sb, "echo kept-"+sb.ID+" > /home/user/kept.txt && head -c 32M /dev/urandom > /home/user/big", nil)
		sums[sb.ID] = sum(sb)
	}
	// A process holding a value only in its memory, which it writes out
	// when asked.
	secret := fmt.Sprintf("mem-%d", time.Now().UnixNano())
	if _, err := withMem.Start(ctx, client.ExecOptions{Cmd: "/bin/bash", Args: []string{"-c",
		"x=" + secret + "; while :; do if [ -e /tmp/ask ]; then echo $x > /tmp/answer; rm /tmp/ask; fi; sleep 0.1; done"}}); err != nil {
		t.Fatal(err)
	}
	if err := withMem.Pause(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := filesOnly.Pause(ctx, &client.PauseOptions{FilesOnly: true}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{withMem.ID, filesOnly.ID} {
		if logLines(n1, "paused sandbox uploaded", "sandbox_id="+id) != 1 {
			t.Fatalf("n1 did not upload paused sandbox %s:\n%s", id, n1.Logs())
		}
	}
	logFigures(t, n1.Logs(), "paused sandbox uploaded")
	// A persistent sandbox left running, with a snapshot: once its node is
	// down it comes back from the snapshot, and what it wrote after is
	// lost.
	lost := createOn(t, ctx, n1, persistent)
	mustRun(t, ctx, lost, "echo before > /home/user/before.txt", nil)
	if _, err := lost.CreateSnapshot(ctx, ""); err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, lost, "echo after > /home/user/after.txt", nil)
	// n1's boxes (the frozen one, the running one) stay on this host, in
	// n1's cgroups (/sbx/nodes/n1): n2 starts its own boxes of those
	// sandboxes beside them, and n1 kills its own when it starts again.
	n1.Stop()

	c2 := n2.Client
	got, err := c2.Resume(ctx, withMem.ID, nil)
	if err != nil {
		t.Fatalf("resume through n2 with n1 down: %v\n%s", err, n2.Logs())
	}
	if n := nodeOf(got.ID); n != "n2" {
		t.Fatalf("resumed sandbox is on %q, want n2", n)
	}
	got2, err := c2.ConnectSandbox(ctx, filesOnly.ID, nil)
	if err != nil {
		t.Fatalf("connect through n2 with n1 down: %v\n%s", err, n2.Logs())
	}
	logFigures(t, n2.Logs(), "paused sandbox moved here")
	back, err := c2.ConnectSandbox(ctx, lost.ID, nil)
	if err != nil {
		t.Fatalf("connect through n2 to a running persistent sandbox of stopped n1: %v\n%s", err, n2.Logs())
	}
	if res := mustRun(t, ctx, back, "cat /home/user/before.txt; ls /home/user/after.txt 2>&1 >/dev/null | wc -l", nil); res.Stdout != "before\n1\n" {
		t.Fatalf("recovered sandbox: %q, want the snapshot's file and not the later one", res.Stdout)
	}
	if n := nodeOf(lost.ID); n != "n2" {
		t.Fatalf("recovered sandbox is on %q, want n2", n)
	}
	for _, sb := range []*client.Sandbox{got, got2} {
		if res := mustRun(t, ctx, sb, "cat /home/user/kept.txt", nil); res.Stdout != "kept-"+sb.ID+"\n" {
			t.Fatalf("%s's file on n2: %q", sb.ID, res.Stdout)
		}
		if s := sum(sb); s != sums[sb.ID] {
			t.Fatalf("%s's 32 MiB file on n2: sha256 %s, want %s", sb.ID, s, sums[sb.ID])
		}
	}
	alive := mustRun(t, ctx, got, "touch /tmp/ask; for i in $(seq 50); do [ -e /tmp/answer ] && break; sleep 0.1; done; cat /tmp/answer 2>/dev/null || echo none", nil).Stdout
	if harness.Runtime() == "runsc" {
		if alive != secret+"\n" {
			t.Fatalf("runsc: the process's memory after the move: %q, want %q", alive, secret)
		}
	} else if alive != "none\n" {
		// runc freezes memory in place: it stays behind on n1.
		t.Fatalf("runc: a process survived the move with %q; its memory should have stayed on n1", alive)
	}

	// A drain of n2 (sbx node drain, asked of n1): the running one moves running, the
	// paused one paused, the ephemeral one is left to its timeout.
	n1.StartAgain()
	if err := got2.Pause(ctx, &client.PauseOptions{FilesOnly: true}); err != nil {
		t.Fatal(err)
	}
	eph := createOn(t, ctx, n2, `{"templateID":"base","timeout":300}`)
	stdout, stderr, code := n1.CLI(ctx, nil, "node", "drain", "n2", "--json")
	var res wire.NodeDrain
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil {
		t.Fatalf("sbx node drain n2: exit %d\n%s\n%s\n%s", code, stdout, stderr, n2.Logs())
	}
	t.Logf("drain: %+v", res)
	for _, msg := range []string{"node drained", "paused sandbox uploaded", "recovered a sandbox of a node that is down from its newest copy", "snapshot fetched"} {
		logFigures(t, n2.Logs(), msg)
	}
	for _, msg := range []string{"paused sandbox moved here", "snapshot published"} {
		logFigures(t, n1.Logs(), msg)
	}
	moved := map[string]wire.DrainedSandbox{}
	for _, m := range res.Moved {
		moved[m.SandboxID] = m
	}
	if len(res.Failed) != 0 || len(moved) != 3 || moved[got.ID].Node != "n1" || moved[got.ID].State != "running" || moved[lost.ID].State != "running" ||
		moved[got2.ID].Node != "n1" || moved[got2.ID].State != "paused" || len(res.Remaining) != 1 || res.Remaining[0].SandboxID != eph.ID {
		t.Fatalf("drain of n2: %+v\n%s", res, n2.Logs())
	}
	left, err := db.ForNode("n2").ListSandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].ID != eph.ID {
		t.Fatalf("n2 holds %d sandboxes after the drain, want only the ephemeral one", len(left))
	}
	if nodeOf(got.ID) != "n1" || nodeOf(got2.ID) != "n1" || nodeOf(lost.ID) != "n1" {
		t.Fatalf("moved sandboxes are on %s and %s, want n1", nodeOf(got.ID), nodeOf(got2.ID))
	}
	if s := sum(got); s != sums[got.ID] {
		t.Fatalf("the running sandbox's file after the drain: %s, want %s", s, sums[got.ID])
	}
	again, err := n1.Client.Resume(ctx, got2.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := sum(again); s != sums[got2.ID] {
		t.Fatalf("the paused sandbox's file after the drain: %s, want %s", s, sums[got2.ID])
	}
	if info, err := n1.Client.GetNode(ctx, "n2"); err != nil || info.Status != "draining" {
		t.Fatalf("n2 after the drain: %+v, %v", info, err)
	}
	for range 3 {
		sb, err := c2.CreateSandbox(ctx, client.CreateOptions{Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if n := nodeOf(sb.ID); n != "n1" {
			t.Fatalf("a create through draining n2 landed on %s", n)
		}
		sb.Kill(ctx)
	}
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/nodes/n2", `{"status":"bogus"}`, 400},
		{"/nodes/n2", `{"status":"unhealthy"}`, 400},
		{"/nodes/n2", `{`, 400},
		{"/nodes/nope", `{"status":"draining"}`, 404},
		{"/nodes/nope/drain", ``, 404},
	} {
		if code, body := fleetPost(t, ctx, n1.URL+tc.path, n1.APIKey, tc.body); code != tc.status || !strings.Contains(body, `"code":`) {
			t.Errorf("POST %s %s: %d %s, want %d in the E2B error shape", tc.path, tc.body, code, body, tc.status)
		}
	}
	if err := n1.Client.SetNodeStatus(ctx, "n2", "ready"); err != nil {
		t.Fatal(err)
	}
	if info, err := n1.Client.GetNode(ctx, "n2"); err != nil || info.Status != "ready" {
		t.Fatalf("n2 set ready: %+v, %v", info, err)
	}
}

// createOn creates a sandbox on node s itself: the request carries the
// cluster key, as a forwarded one would, so s does not place it elsewhere.
func createOn(t testing.TB, ctx context.Context, s *harness.Server, body string) *client.Sandbox {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/sandboxes", strings.NewReader(body))
	req.Header.Set("X-API-Key", s.APIKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sbx-Cluster-Key", fleetKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sb wire.Sandbox
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &sb) != nil || sb.SandboxID == "" {
		t.Fatalf("create on %s: %s %s", s.URL, resp.Status, b)
	}
	h, err := s.Client.ConnectSandbox(ctx, sb.SandboxID, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// fleetPost POSTs body to url with key and returns the status and body.
func fleetPost(t *testing.T, ctx context.Context, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader([]byte(body)))
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// logFigures logs the lines of logs with msg (their transfer figures).
func logFigures(t *testing.T, logs, msg string) {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, msg) {
			t.Log(l)
		}
	}
}

// logLines counts the lines of logs with message msg and attribute attr
// (key=value).
// countLogLines counts the lines of logs with msg and attr.
func countLogLines(logs, msg, attr string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "msg=\""+msg+"\"") && strings.Contains(l, " "+attr+" ") {
			n++
		}
	}
	return n
}

// logLines counts s's log lines of msg with attr once at least one is
// there, or after 30 s. A server logs before it answers, but its log
// reaches the harness through a pipe, later, by a little under load.
func logLines(s *harness.Server, msg, attr string) int {
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := countLogLines(s.Logs(), msg, attr)
		if n > 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// s3Store returns the --object-store URL of prefix in the test's bucket on
// the harness's S3 server, whose credentials it sets in the environment
// the servers the test starts inherit.
func s3Store(t *testing.T, prefix string) string {
	ep, bucket, ak, sk := harness.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", ak)
	t.Setenv("AWS_SECRET_ACCESS_KEY", sk)
	return "s3://" + bucket + "/" + prefix + "?endpoint=" + ep
}
