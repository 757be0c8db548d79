package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// TestFleetRecoverLost SIGKILLs one node of three sharing Postgres and a
// bucket (SeaweedFS on loopback):
//
//   - its persistent sandbox comes back running on exactly one survivor,
//     from its newest copy (a snapshot taken after an older paused image):
//     the SDK through any node sees it running there, with its files as of
//     the snapshot, and its resumed event says what was lost;
//   - its ephemeral sandbox is reported failed ("node n1 lost"), and a
//     persistent one with no copy failed with why it was not recovered;
//   - GET /events/sandboxes/{id} through a node that does not own the
//     sandbox answers from the store, and 404 for another team's key;
//   - n1, started again, kills at start the boxes of the sandboxes that
//     were failed or now live elsewhere, and the recovered one runs on.
//
// The nodes share this host, each with its boxes' cgroups under
// /sbx/nodes/<node>: n1's boxes, left running by the SIGKILL, do not keep
// the survivor from starting the recovered sandbox's box.
func TestFleetRecoverLost(t *testing.T) {
	objURL := s3Store(t, fmt.Sprintf("recover-%d", os.Getpid()))
	dsn, nodes := startFleet(t, 3, "--object-store", objURL)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := ctxFor(t, 12*time.Minute)
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	record := func(id string) *store.Sandbox {
		t.Helper()
		rec, err := db.GetSandbox(ctx, id)
		if err != nil {
			t.Fatalf("record of %s: %v", id, err)
		}
		return rec
	}

	// Another team's key, which every node knows once it has read the
	// store's keys (every 2 s).
	var team wire.TeamInfo
	must(t, ctx, "POST", n1.URL+"/sbx/v1/teams", n1.APIKey, map[string]any{"name": "other"}, 201, &team)
	var other wire.Key
	must(t, ctx, "POST", n1.URL+"/sbx/v1/keys", n1.APIKey, map[string]any{"team": "other"}, 201, &other)

	// On n1: a persistent sandbox with an older paused image and a newer
	// snapshot, what it wrote after the snapshot to be lost; an ephemeral
	// one; a persistent one with no copy.
	const persistent = `{"templateID":"base","timeout":600,"lifecycle":"persistent"}`
	kept := createOn(t, ctx, n1, persistent)
	mustRun(t, ctx, kept, "echo v1 > /home/user/v.txt", nil)
	if err := kept.Pause(ctx, &client.PauseOptions{FilesOnly: true}); err != nil {
		t.Fatal(err)
	}
	if logLines(n1, "paused sandbox uploaded", "sandbox_id="+kept.ID) != 1 {
		t.Fatalf("n1 did not upload the paused image of %s:\n%s", kept.ID, n1.Logs())
	}
	kept, err = n1.Client.Resume(ctx, kept.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, kept, "echo v2 > /home/user/v.txt", nil)
	sn, err := kept.CreateSnapshot(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if logLines(n1, "snapshot published", "snapshot_id="+sn.SnapshotID) != 1 {
		t.Fatalf("n1 did not publish snapshot %s:\n%s", sn.SnapshotID, n1.Logs())
	}
	mustRun(t, ctx, kept, "echo v3 > /home/user/v.txt; echo later > /home/user/later.txt", nil)
	eph := createOn(t, ctx, n1, `{"templateID":"base","timeout":600}`)
	nocopy := createOn(t, ctx, n1, persistent)

	// A sandbox's events through a node that does not own it.
	awaitKey(t, ctx, client.New(n2.URL, other.Key), true)
	evURL := n2.URL + "/events/sandboxes/" + kept.ID
	if code, body := teamSend(t, ctx, "GET", evURL, n1.APIKey, nil); code != http.StatusOK || !strings.Contains(string(body), wire.EventCreated) {
		t.Fatalf("GET /events/sandboxes/{id} through n2 of n1's sandbox: %d %s", code, body)
	}
	if code, body := teamSend(t, ctx, "GET", evURL+"?type="+wire.EventFailed, n1.APIKey, nil); code != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("GET /events/sandboxes/{id}?type=failed through n2 of n1's sandbox: %d %s, want 200 []", code, body)
	}
	if code, body := teamSend(t, ctx, "GET", evURL, other.Key, nil); code != http.StatusNotFound || !strings.Contains(string(body), `"code":404`) {
		t.Fatalf("GET /events/sandboxes/{id} with another team's key: %d %s, want 404", code, body)
	}

	killed := time.Now()
	n1.Crash()
	ev := awaitFailedEvent(t, ctx, n2.Client, eph.ID, 60*time.Second)
	detect := time.Since(killed)
	if ev.EventData == nil || ev.EventData.Reason != "node n1 lost" {
		t.Fatalf("the ephemeral sandbox's failed event: %+v", ev.EventData)
	}
	var rec *store.Sandbox
	for deadline := time.Now().Add(3 * time.Minute); ; {
		rec = record(kept.ID)
		if rec.Node != "n1" && rec.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the persistent sandbox did not come back running elsewhere: %+v\nn2:\n%s\nn3:\n%s", rec, n2.Logs(), n3.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("n1 SIGKILLed: loss reported after %s, the persistent sandbox running on %s after %s",
		detect.Round(100*time.Millisecond), rec.Node, time.Since(killed).Round(100*time.Millisecond))

	// Exactly one survivor took it over.
	took := 0
	for _, s := range []*harness.Server{n2, n3} {
		mine := s == n2 && rec.Node == "n2" || s == n3 && rec.Node == "n3"
		n := countLogLines(s.Logs(), "sandbox of a lost node recovered here", "sandbox_id="+kept.ID)
		if mine {
			n = logLines(s, "sandbox of a lost node recovered here", "sandbox_id="+kept.ID)
		}
		took += n
		_, err := os.Stat(filepath.Join(s.DataDir, "sandboxes", kept.ID))
		if mine != (n == 1) || mine != (err == nil) {
			t.Fatalf("node of %s: recovered it %d times, its directory: %v; the record says %s", s.URL, n, err, rec.Node)
		}
	}
	if took != 1 {
		t.Fatalf("%d recoveries of %s, want 1", took, kept.ID)
	}
	for _, via := range []*harness.Server{n2, n3} {
		info, err := via.Client.GetSandbox(ctx, kept.ID)
		if err != nil || info.State != "running" {
			t.Fatalf("GetSandbox through %s: %+v, %v", via.URL, info, err)
		}
		h, err := via.Client.ConnectSandbox(ctx, kept.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res := mustRun(t, ctx, h, "cat /home/user/v.txt; ls /home/user/later.txt 2>&1 >/dev/null | wc -l", nil); res.Stdout != "v2\n1\n" {
			t.Fatalf("recovered sandbox through %s: %q, want the snapshot's v2 and no later file", via.URL, res.Stdout)
		}
	}
	// The box's own cgroup is its root (runc's cgroup namespace), or
	// gVisor's own tree (runsc): neither the node's parent nor another
	// node's boxes show.
	inside, err := n3.Client.ConnectSandbox(ctx, kept.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, inside, "cat /proc/self/cgroup; ls -a /sys/fs/cgroup /sys/fs/cgroup/* 2>/dev/null", nil); strings.Contains(res.Stdout, "sbx") ||
		strings.Contains(res.Stdout, "nodes") {
		t.Fatalf("the recovered sandbox sees the host's cgroup tree:\n%s", res.Stdout)
	}
	evs, err := n2.Client.ListEvents(ctx, &client.EventListOptions{SandboxID: kept.ID, Types: []string{wire.EventResumed}})
	if err != nil || len(evs) == 0 || evs[0].EventData == nil {
		t.Fatalf("resumed events of the recovered sandbox: %+v, %v", evs, err)
	}
	if r := evs[0].EventData.Reason; !strings.HasPrefix(r, "node n1 lost; recovered from its snapshot "+sn.SnapshotID+" of ") || !strings.Contains(r, "is lost") {
		t.Fatalf("the recovery's reason: %q", r)
	}
	if r := record(eph.ID); r.State != "failed" || r.Error != "node n1 lost" {
		t.Fatalf("the ephemeral sandbox: %s %q", r.State, r.Error)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		r := record(nocopy.ID)
		if r.State == "failed" {
			if !strings.HasPrefix(r.Error, "node n1 lost; not recovered: ") || !strings.Contains(r.Error, "no copy") {
				t.Fatalf("the persistent sandbox with no copy failed with %q", r.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the persistent sandbox with no copy: %s, want failed", r.State)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// n1 back: before it serves, the boxes it left are killed.
	n1.StartAgain()
	n1.APIKey, n1.Client = n2.APIKey, client.New(n1.URL, n2.APIKey)
	for _, id := range []string{kept.ID, eph.ID, nocopy.ID} {
		if _, err := os.Stat(filepath.Join(n1.DataDir, "sandboxes", id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("n1's box of %s once it serves again: %v, want it gone", id, err)
		}
	}
	for _, id := range []string{kept.ID, eph.ID, nocopy.ID} {
		if n := logLines(n1, "killed the box of a sandbox the fleet ended while this node was away", "sandbox_id="+id); n != 1 {
			t.Fatalf("n1 logged killing %s's box %d times at start, want once:\n%s", id, n, n1.Logs())
		}
	}
	h, err := n1.Client.ConnectSandbox(ctx, kept.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, h, "cat /home/user/v.txt", nil); res.Stdout != "v2\n" {
		t.Fatalf("the recovered sandbox through n1 once back: %q", res.Stdout)
	}
	if r := record(kept.ID); r.Node == "n1" || r.State != "running" {
		t.Fatalf("the recovered sandbox once n1 is back: %s on %s", r.State, r.Node)
	}
}
