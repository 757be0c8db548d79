package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// The fleet-wide sandbox list.
//
// Each node's Hub hears its own Manager's events only, and a node's store
// lists its own sandboxes only, so each node serves the stream of its own
// sandboxes (GET /dashboard/api/sandboxes/stream?scope=node). In a fleet
// the node a browser talks to serves the whole fleet's list: it opens the
// node stream of each live peer with the browser's own credentials (the
// peer checks them as if the browser had come directly), merges them with
// its own and sends the browser one stream of the same events. A peer
// whose stream ends leaves the list (its sandboxes cannot be reached
// either) until it is opened again; the peers are looked up again every
// fleetRefresh, so that a node that joins shows up.

// fleetRefresh is how often a fleet stream looks up the live peers and
// opens the streams of those it lacks.
const fleetRefresh = 3 * time.Second

// maxEventBytes bounds one event of a peer's stream (a snapshot of many
// sandboxes is the largest).
const maxEventBytes = 64 << 20

// Peer is another node of the fleet.
type Peer struct {
	// Name is the node's name.
	Name string
	// Open opens the node's own stream (scope=node) for the browser's
	// request r: its body is the text/event-stream. It must end when ctx
	// does.
	Open func(ctx context.Context, r *http.Request) (io.ReadCloser, error)
}

// Peers returns the live nodes of the fleet other than this one.
type Peers func(ctx context.Context) ([]Peer, error)

// SetPeers makes the stream fleet-wide, over the nodes peers returns. It
// must be called before the dashboard serves.
func (s *Server) SetPeers(peers Peers) { s.peers = peers }

// event is one server-sent event of a sandbox stream.
type event struct {
	kind string // snapshot, upsert, remove
	data json.RawMessage
}

// sourced is an event of one node's stream; kind "gone" says the stream
// ended.
type sourced struct {
	node string
	event
}

// merge is the fleet's list as the browser was last told it, by node.
// It turns each node's events into the events of the merged stream.
type merge struct {
	nodes map[string]map[string]json.RawMessage // node -> sandbox id -> listed sandbox
}

func newMerge() *merge { return &merge{nodes: map[string]map[string]json.RawMessage{}} }

// apply takes event ev of node's stream and returns the events that tell
// the browser of it.
func (m *merge) apply(ev sourced) ([]event, error) {
	switch ev.kind {
	case "snapshot":
		var list []json.RawMessage
		if err := json.Unmarshal(ev.data, &list); err != nil {
			return nil, fmt.Errorf("node %s: snapshot: %w", ev.node, err)
		}
		set := make(map[string]json.RawMessage, len(list))
		for _, raw := range list {
			id, err := sandboxIDOf(raw)
			if err != nil {
				return nil, fmt.Errorf("node %s: snapshot: %w", ev.node, err)
			}
			set[id] = raw
		}
		m.nodes[ev.node] = set
		return []event{m.snapshot()}, nil
	case "gone":
		if _, ok := m.nodes[ev.node]; !ok {
			return nil, nil
		}
		delete(m.nodes, ev.node)
		return []event{m.snapshot()}, nil
	case "upsert":
		id, err := sandboxIDOf(ev.data)
		if err != nil {
			return nil, fmt.Errorf("node %s: upsert: %w", ev.node, err)
		}
		set := m.nodes[ev.node]
		if set == nil {
			set = map[string]json.RawMessage{}
			m.nodes[ev.node] = set
		}
		// A sandbox that moved here from another node leaves that
		// node's list.
		for n, other := range m.nodes {
			if n != ev.node {
				delete(other, id)
			}
		}
		set[id] = ev.data
		return []event{{"upsert", ev.data}}, nil
	case "remove":
		id, err := sandboxIDOf(ev.data)
		if err != nil {
			return nil, fmt.Errorf("node %s: remove: %w", ev.node, err)
		}
		delete(m.nodes[ev.node], id)
		// Another node that lists it (it moved there) still has it.
		for _, n := range m.sorted() {
			if raw, ok := m.nodes[n][id]; ok {
				return []event{{"upsert", raw}}, nil
			}
		}
		return []event{{"remove", ev.data}}, nil
	}
	return nil, nil // a kind this node does not know: skipped
}

// snapshot is the whole merged list, newest first.
func (m *merge) snapshot() event {
	type item struct {
		raw     json.RawMessage
		started time.Time
		id      string
	}
	seen := map[string]bool{}
	var all []item
	for _, n := range m.sorted() {
		for id, raw := range m.nodes[n] {
			if seen[id] {
				continue
			}
			seen[id] = true
			var sb struct {
				StartedAt time.Time `json:"startedAt"`
			}
			_ = json.Unmarshal(raw, &sb)
			all = append(all, item{raw, sb.StartedAt, id})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].started.Equal(all[j].started) {
			return all[i].started.After(all[j].started)
		}
		return all[i].id < all[j].id
	})
	out := make([]json.RawMessage, 0, len(all))
	for _, it := range all {
		out = append(out, it.raw)
	}
	b, _ := json.Marshal(out)
	return event{"snapshot", b}
}

func (m *merge) sorted() []string {
	names := make([]string, 0, len(m.nodes))
	for n := range m.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func sandboxIDOf(raw json.RawMessage) (string, error) {
	var sb struct {
		SandboxID string `json:"sandboxID"`
	}
	if err := json.Unmarshal(raw, &sb); err != nil {
		return "", err
	}
	if sb.SandboxID == "" {
		return "", errors.New("no sandboxID")
	}
	return sb.SandboxID, nil
}

// readEvents reads the server-sent events of r, calling emit with each,
// until r ends or emit fails.
func readEvents(r io.Reader, emit func(event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventBytes)
	var kind string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if kind != "" || len(data) > 0 {
				if kind == "" {
					kind = "message"
				}
				if err := emit(event{kind, json.RawMessage(strings.Join(data, "\n"))}); err != nil {
					return err
				}
			}
			kind, data = "", nil
		case strings.HasPrefix(line, ":"):
			// a comment (keep-alive)
		case strings.HasPrefix(line, "event:"):
			kind = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}

// fleetStream serves the merged stream of this node's sandboxes and its
// peers'.
func (s *Server) fleetStream(w http.ResponseWriter, r *http.Request, team string) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	events := make(chan sourced, 64)
	push := func(node string) func(event) error {
		return func(ev event) error {
			select {
			case events <- sourced{node, ev}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	// This node's own events, from its Hub.
	localErr := make(chan error, 1)
	go func() {
		localErr <- s.nodeEvents(ctx, team, func(kind string, v any) error {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			return push("")(event{kind, b})
		})
	}()
	var mu sync.Mutex
	open := map[string]bool{} // peers whose stream is open
	openPeers := func() {
		peers, err := s.peers(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("dashboard fleet stream: list the peers", "err", err)
			}
			return
		}
		for _, p := range peers {
			mu.Lock()
			if open[p.Name] {
				mu.Unlock()
				continue
			}
			open[p.Name] = true
			mu.Unlock()
			go func(p Peer) {
				defer func() {
					mu.Lock()
					delete(open, p.Name)
					mu.Unlock()
					select {
					case events <- sourced{p.Name, event{kind: "gone"}}:
					case <-ctx.Done():
					}
				}()
				body, err := p.Open(ctx, r)
				if err != nil {
					if ctx.Err() == nil {
						s.log.Warn("dashboard fleet stream: open a peer's stream", "node", p.Name, "err", err)
					}
					return
				}
				defer body.Close()
				err = readEvents(body, push(p.Name))
				if ctx.Err() == nil {
					s.log.Warn("dashboard fleet stream: a peer's stream ended", "node", p.Name, "err", err)
				}
			}(p)
		}
	}

	m := newMerge()
	started := false
	send := func(ev event) error {
		if !started {
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-store")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.kind, ev.data); err != nil {
			return err
		}
		return rc.Flush()
	}
	// The browser's first event is this node's snapshot (merged with
	// whatever peers have answered by then), so that a refusal of this
	// node's read is the answer.
	openPeers()
	refresh := time.NewTicker(fleetRefresh)
	defer refresh.Stop()
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	var pending []sourced // peers' events before this node's snapshot
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-localErr:
			if !started && err != nil {
				return err
			}
			return nil
		case <-refresh.C:
			openPeers()
		case <-ping.C:
			if !started {
				continue
			}
			if _, err := w.Write([]byte(": ping\n\n")); err != nil || rc.Flush() != nil {
				return nil
			}
		case ev := <-events:
			if !started && ev.node != "" {
				pending = append(pending, ev)
				continue
			}
			if !started {
				// This node's snapshot, with what peers said before it,
				// as one snapshot.
				for _, e := range append(pending, ev) {
					if _, err := m.apply(e); err != nil {
						s.log.Warn("dashboard fleet stream: a bad event", "err", err)
					}
				}
				pending = nil
				if send(m.snapshot()) != nil {
					return nil
				}
				continue
			}
			out, err := m.apply(ev)
			if err != nil {
				s.log.Warn("dashboard fleet stream: a bad event", "err", err)
				continue
			}
			for _, o := range out {
				if send(o) != nil {
					return nil
				}
			}
		}
	}
}
