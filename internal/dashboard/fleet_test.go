package dashboard

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

func listed(id, started string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"sandboxID":%q,"startedAt":%q,"state":"running"}`, id, started))
}

func ids(t *testing.T, ev event) []string {
	t.Helper()
	if ev.kind != "snapshot" {
		t.Fatalf("event %s, want a snapshot", ev.kind)
	}
	var list []struct {
		SandboxID string `json:"sandboxID"`
	}
	if err := json.Unmarshal(ev.data, &list); err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, s := range list {
		out = append(out, s.SandboxID)
	}
	return out
}

func snap(items ...json.RawMessage) json.RawMessage {
	b, _ := json.Marshal(items)
	return b
}

// TestMerge follows the merged list of two nodes' streams through
// snapshots, upserts, removes, a sandbox moving between nodes and a node
// whose stream ends.
func TestMerge(t *testing.T) {
	m := newMerge()
	must := func(ev sourced) []event {
		t.Helper()
		out, err := m.apply(ev)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := must(sourced{"", event{"snapshot", snap(listed("a", "2025-01-01T00:00:01Z"))}})
	if len(out) != 1 || strings.Join(ids(t, out[0]), ",") != "a" {
		t.Fatalf("first snapshot: %+v", out)
	}
	out = must(sourced{"n2", event{"snapshot", snap(listed("b", "2025-01-01T00:00:03Z"), listed("c", "2025-01-01T00:00:02Z"))}})
	if got := strings.Join(ids(t, out[0]), ","); got != "b,c,a" {
		t.Fatalf("merged snapshot %s, want b,c,a (newest first)", got)
	}
	// An upsert of a peer passes through as it is.
	d := listed("d", "2025-01-01T00:00:04Z")
	out = must(sourced{"n2", event{"upsert", d}})
	if len(out) != 1 || out[0].kind != "upsert" || string(out[0].data) != string(d) {
		t.Fatalf("upsert: %+v", out)
	}
	// d moves to this node: its upsert here, then n2's remove of it,
	// leaves it listed.
	must(sourced{"", event{"upsert", d}})
	out = must(sourced{"n2", event{"remove", json.RawMessage(`{"sandboxID":"d"}`)}})
	if len(out) != 1 || out[0].kind != "upsert" {
		t.Fatalf("remove of a sandbox that moved: %+v, want it upserted", out)
	}
	out = must(sourced{"", event{"remove", json.RawMessage(`{"sandboxID":"d"}`)}})
	if len(out) != 1 || out[0].kind != "remove" {
		t.Fatalf("remove: %+v", out)
	}
	// n2's stream ends: its sandboxes leave the list.
	out = must(sourced{"n2", event{kind: "gone"}})
	if got := strings.Join(ids(t, out[0]), ","); got != "a" {
		t.Fatalf("after n2 went: %s, want a", got)
	}
	if out := must(sourced{"n2", event{kind: "gone"}}); len(out) != 0 {
		t.Fatalf("a second gone: %+v", out)
	}
	// Unknown kinds are skipped; bad data is an error, not a panic.
	if out := must(sourced{"n3", event{"ping", nil}}); len(out) != 0 {
		t.Fatalf("ping: %+v", out)
	}
	for _, ev := range []sourced{
		{"n3", event{"snapshot", json.RawMessage(`{"not":"a list"}`)}},
		{"n3", event{"snapshot", json.RawMessage(`[{"state":"running"}]`)}},
		{"n3", event{"upsert", json.RawMessage(`[`)}},
		{"n3", event{"remove", json.RawMessage(`{}`)}},
	} {
		if _, err := m.apply(ev); err == nil {
			t.Errorf("%s %s: no error", ev.kind, ev.data)
		}
	}
}

// TestReadEvents parses a server-sent event stream as the node streams
// write it.
func TestReadEvents(t *testing.T) {
	in := ": ping\n\nevent: snapshot\ndata: [1,\ndata: 2]\n\nevent: upsert\ndata: {\"sandboxID\":\"x\"}\n\nevent: remove\ndata: {}"
	var got []string
	err := readEvents(strings.NewReader(in), func(ev event) error {
		got = append(got, ev.kind+" "+string(ev.data))
		return nil
	})
	if err != io.EOF {
		t.Fatalf("err %v, want io.EOF", err)
	}
	want := []string{"snapshot [1,\n2]", `upsert {"sandboxID":"x"}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q (an event cut off by the end is dropped)", got, want)
	}
	stop := fmt.Errorf("stop")
	if err := readEvents(strings.NewReader(in), func(event) error { return stop }); err != stop {
		t.Fatalf("err %v, want emit's", err)
	}
}
