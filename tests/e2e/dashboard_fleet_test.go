package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// dashEvent is one event of a dashboard sandbox stream.
type dashEvent struct {
	kind string
	data []byte
}

// ids are the sandbox ids of a snapshot, or the one of an upsert or a
// remove.
func (e dashEvent) ids(t *testing.T) []string {
	t.Helper()
	if e.kind == "snapshot" {
		var list []wire.ListedSandbox
		if err := json.Unmarshal(e.data, &list); err != nil {
			t.Fatalf("snapshot %s: %v", e.data, err)
		}
		var out []string
		for _, s := range list {
			out = append(out, s.SandboxID)
		}
		return out
	}
	var one struct {
		SandboxID string `json:"sandboxID"`
	}
	if err := json.Unmarshal(e.data, &one); err != nil {
		t.Fatalf("%s %s: %v", e.kind, e.data, err)
	}
	return []string{one.SandboxID}
}

// dashStream opens srv's dashboard sandbox stream with query as session s
// and sends its events on the channel returned, which is closed when the
// stream ends.
func dashStream(t *testing.T, ctx context.Context, s *dashSession, srv *harness.Server, query string) <-chan dashEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/dashboard/api/sandboxes/stream"+query, nil)
	req.AddCookie(s.cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream%s on %s: %d %s", query, srv.URL, resp.StatusCode, b)
	}
	ch := make(chan dashEvent, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		r := &sseReader{br: bufio.NewReader(resp.Body), body: resp.Body}
		for {
			kind, data, err := r.next()
			if err != nil {
				return
			}
			select {
			case ch <- dashEvent{kind, data}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// awaitEvent reads ch until an event satisfies ok, failing after d.
func awaitEvent(t *testing.T, ch <-chan dashEvent, d time.Duration, what string, ok func(dashEvent) bool) dashEvent {
	t.Helper()
	deadline := time.After(d)
	var seen []string
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("%s: the stream ended; events seen: %v", what, seen)
			}
			seen = append(seen, ev.kind+" "+string(ev.data))
			if ok(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("%s: not within %s; events seen: %v", what, d, seen)
		}
	}
}

// createOnNode makes a sandbox on node srv itself: a create carrying the
// cluster key is one forwarded to srv, which places it on itself.
func createOnNode(t *testing.T, ctx context.Context, srv *harness.Server, key string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/sandboxes", strings.NewReader(`{"templateID":"base","timeout":300}`))
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sbx-Cluster-Key", fleetKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sb wire.Sandbox
	if resp.StatusCode != 201 || json.Unmarshal(b, &sb) != nil || sb.SandboxID == "" {
		t.Fatalf("create on %s: %d %s", srv.URL, resp.StatusCode, b)
	}
	return sb.SandboxID
}

// TestDashboardFleetStream: in a fleet of two nodes on one store, the
// dashboard stream of the node a browser signed in to is the whole
// fleet's and live: a sandbox made on the other node appears on it
// without a new request, and goes when killed, while each node's own
// stream (?scope=node) lists its own sandboxes only.
func TestDashboardFleetStream(t *testing.T) {
	_, nodes := startFleet(t, 2)
	ctx := ctxFor(t, 5*time.Minute)
	n1, n2 := nodes[0], nodes[1]
	s := dashSignIn(t, ctx, n1, n1.APIKey)

	onN1 := createOnNode(t, ctx, n1, n1.APIKey)
	fleet := dashStream(t, ctx, s, n1, "")
	awaitEvent(t, fleet, 30*time.Second, "n1's own sandbox in the first snapshot", func(e dashEvent) bool {
		return e.kind == "snapshot" && slices.Contains(e.ids(t), onN1)
	})

	// Made on n2, seen on n1's stream with no new request.
	onN2 := createOnNode(t, ctx, n2, n1.APIKey)
	awaitEvent(t, fleet, 60*time.Second, "n2's sandbox on n1's stream", func(e dashEvent) bool {
		return (e.kind == "upsert" || e.kind == "snapshot") && slices.Contains(e.ids(t), onN2)
	})

	// A stream opened now starts with both, in its snapshot.
	fresh := dashStream(t, ctx, s, n1, "?scope=fleet")
	awaitEvent(t, fresh, 30*time.Second, "both nodes' sandboxes in a new stream's snapshot", func(e dashEvent) bool {
		ids := e.ids(t)
		return e.kind == "snapshot" && slices.Contains(ids, onN1) && slices.Contains(ids, onN2)
	})

	// Each node's own stream has its own sandboxes only; the session
	// signed in on n1 is good on n2 (one store).
	for _, c := range []struct {
		srv       *harness.Server
		has, lack string
	}{{n1, onN1, onN2}, {n2, onN2, onN1}} {
		ev := awaitEvent(t, dashStream(t, ctx, s, c.srv, "?scope=node"), 30*time.Second, "a node stream's snapshot", func(e dashEvent) bool { return e.kind == "snapshot" })
		if ids := ev.ids(t); !slices.Contains(ids, c.has) || slices.Contains(ids, c.lack) {
			t.Errorf("node stream of %s lists %v; want %s and not %s", c.srv.URL, ids, c.has, c.lack)
		}
	}

	// Another team's session sees its own sandboxes from the whole fleet
	// and none of this team's: each peer reads its node's list with the
	// browser's own credentials.
	if _, stderr, code := n1.CLI(ctx, nil, "team", "create", "fleetother"); code != 0 {
		t.Fatalf("sbx team create: %d %s", code, stderr)
	}
	out, stderr, code := n1.CLI(ctx, nil, "key", "create", "--team", "fleetother", "--name", "fleetother")
	if code != 0 {
		t.Fatalf("sbx key create: %d %s", code, stderr)
	}
	otherKey := strings.TrimSpace(out)
	// n2 learns of a key made on n1 at its next reload of the keys (every
	// 2 s): wait until it takes it.
	for known := time.Now().Add(30 * time.Second); ; {
		req, _ := http.NewRequestWithContext(ctx, "GET", n2.URL+"/v2/sandboxes", nil)
		req.Header.Set("X-API-Key", otherKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(known) {
			t.Fatalf("n2 refuses the key made on n1 after 30 s: %d", resp.StatusCode)
		}
		time.Sleep(200 * time.Millisecond) // polling the condition; there is no event for it
	}
	other := dashSignIn(t, ctx, n1, otherKey)
	otherStream := dashStream(t, ctx, other, n1, "")
	theirs := createOnNode(t, ctx, n2, otherKey)
	deadline := time.After(60 * time.Second)
	for found := false; !found; {
		select {
		case ev, open := <-otherStream:
			if !open {
				t.Fatal("the other team's stream ended")
			}
			ids := ev.ids(t)
			if slices.Contains(ids, onN1) || slices.Contains(ids, onN2) {
				t.Fatalf("the other team's stream shows this team's sandboxes: %s %s", ev.kind, ev.data)
			}
			found = slices.Contains(ids, theirs)
		case <-deadline:
			t.Fatalf("the other team's sandbox on n2 never showed on its stream on n1")
		}
	}

	// Killed through n1 (forwarded to n2), it leaves n1's stream.
	if resp, b := s.do(t, ctx, "DELETE", "/sandboxes/"+onN2, nil, true); resp.StatusCode != 204 {
		t.Fatalf("kill %s through n1: %d %s", onN2, resp.StatusCode, b)
	}
	awaitEvent(t, fleet, 60*time.Second, "n2's sandbox removed from n1's stream", func(e dashEvent) bool {
		return (e.kind == "remove" && slices.Contains(e.ids(t), onN2)) || (e.kind == "snapshot" && !slices.Contains(e.ids(t), onN2))
	})

	// Bad input: an unknown scope is a 400 in the E2B error shape; no
	// session is a 401.
	resp, b := s.do(t, ctx, "GET", "/dashboard/api/sandboxes/stream?scope=everywhere", nil, false)
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if resp.StatusCode != 400 || json.Unmarshal(b, &e) != nil || e.Code != 400 || !strings.Contains(e.Message, "scope") {
		t.Errorf("scope=everywhere: %d %s; want 400 naming the scope", resp.StatusCode, b)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", n1.URL+"/dashboard/api/sandboxes/stream", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("stream without a session: %v %v; want 401", resp, err)
	} else {
		resp.Body.Close()
	}

	// Signing out on n1 ends the merged stream.
	if resp, b := s.do(t, ctx, "DELETE", "/dashboard/api/session", nil, true); resp.StatusCode/100 != 2 {
		t.Fatalf("sign out: %d %s", resp.StatusCode, b)
	}
	deadline = time.After(30 * time.Second)
	for {
		select {
		case _, open := <-fleet:
			if !open {
				return
			}
		case <-deadline:
			t.Fatal("the fleet stream outlived its session by 30 s")
		}
	}
}
