package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/proxy"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

type fencedFlag bool

func (f fencedFlag) fenced() bool { return bool(f) }

type sink struct {
	mu  sync.Mutex
	evs []*store.Event
}

func (s *sink) Stored(ev *store.Event) { s.mu.Lock(); s.evs = append(s.evs, ev); s.mu.Unlock() }

// TestLossWatch checks that a node whose lease lapsed is declared lost
// and its sandboxes settled (running failed with the reason, pending
// killed, paused left, persistent failed since there is no object store
// to recover it from), with their events; that a node
// which released its lease, one outside the fleet (no advertise URL), and
// a watcher that is itself fenced, declare nothing.
func TestLossWatch(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	for _, n := range []*store.Node{
		{ID: "n1", StartedAt: now, RenewedAt: now, LeaseUntil: now.Add(leaseTTL)},
		{ID: "n2", StartedAt: now, RenewedAt: now.Add(-20 * time.Second), LeaseUntil: now.Add(-5 * time.Second)},
		{ID: "n3", StartedAt: now, RenewedAt: now.Add(-20 * time.Second), LeaseUntil: now.Add(-5 * time.Second)},
		{ID: "solo", StartedAt: now, RenewedAt: now.Add(-20 * time.Second), LeaseUntil: now.Add(-5 * time.Second)},
	} {
		if n.ID != "solo" {
			n.Advertise = "http://10.0.0.1:49982"
		}
		if err := db.RenewNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.ReleaseNode(ctx, "n3", now.Add(-5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, sb := range []*store.Sandbox{
		{ID: "run2", Node: "n2", State: "running"},
		{ID: "new2", Node: "n2", State: "creating"},
		{ID: "keep2", Node: "n2", State: "running", Life: store.SandboxLife{Persistent: true}},
		{ID: "paused2", Node: "n2", State: "paused"},
		{ID: "run3", Node: "n3", State: "running"},
		{ID: "run1", Node: "n1", State: "running"},
	} {
		sb.Template, sb.Runtime = "base", "runc"
		if err := db.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	fenced := &lossWatch{self: "n1", db: db, lease: fencedFlag(true), log: log, now: time.Now}
	if err := fenced.scan(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := db.GetNode(ctx, "n2"); !n.LostAt.IsZero() {
		t.Fatalf("a fenced node declared n2 lost: %+v", n)
	}
	var evs sink
	w := &lossWatch{self: "n1", db: db, lease: fencedFlag(false), events: &evs, log: log, now: time.Now}
	for range 2 { // the second scan finds nothing left to do
		if err := w.scan(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := db.GetNode(ctx, "n2"); n.LostAt.IsZero() || n.LostBy != "n1" {
		t.Fatalf("n2 not declared lost: %+v", n)
	}
	if n, _ := db.GetNode(ctx, "n3"); !n.LostAt.IsZero() {
		t.Fatalf("n3, released, declared lost: %+v", n)
	}
	if n, _ := db.GetNode(ctx, "solo"); !n.LostAt.IsZero() {
		t.Fatalf("solo, outside the fleet, declared lost: %+v", n)
	}
	for id, want := range map[string]store.State{"run2": "failed", "new2": "killed", "keep2": "failed", "paused2": "paused", "run3": "running", "run1": "running"} {
		sb, err := db.GetSandbox(ctx, id)
		if err != nil || sb.State != want {
			t.Fatalf("%s: %+v, %v; want %s", id, sb, err, want)
		}
		if id == "run2" && sb.Error != "node n2 lost" {
			t.Fatalf("run2's error %q", sb.Error)
		}
		if id == "keep2" && sb.Error != "node n2 lost; not recovered: the fleet has no object store to keep copies in" {
			t.Fatalf("keep2's error %q", sb.Error)
		}
	}
	if len(evs.evs) != 3 {
		t.Fatalf("%d events told, want 3", len(evs.evs))
	}
	stored, err := db.ListEvents(ctx, store.EventFilter{SandboxID: "run2"})
	if err != nil || len(stored) != 1 || stored[0].Type != wire.EventFailed {
		t.Fatalf("run2's events: %+v, %v", stored, err)
	}
	var data wire.SandboxEventData
	if err := json.Unmarshal(stored[0].Data, &data); err != nil || data.Reason != "node n2 lost" || data.PreviousState != "running" {
		t.Fatalf("run2's event data: %s, %v", stored[0].Data, err)
	}
	killed, err := db.ListEvents(ctx, store.EventFilter{SandboxID: "new2"})
	if err != nil || len(killed) != 1 || killed[0].Type != wire.EventKilled {
		t.Fatalf("new2's events: %+v, %v", killed, err)
	}
}

// TestLossWatchRecovers checks which lost sandboxes the watcher recovers
// and how it reports what it cannot: only the declaring node recovers
// (any node once that one is down too); persistent sandboxes that ran are
// recovered, a persistent create is killed (placement retries it), a
// paused one waits; one without a copy fails with the reason; one that
// another node recovered first is left alone.
func TestLossWatchRecovers(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	lapsed := now.Add(-5 * time.Second)
	for _, n := range []*store.Node{
		{ID: "n1", LeaseUntil: now.Add(leaseTTL)},
		{ID: "n3", LeaseUntil: now.Add(leaseTTL)},
		{ID: "n2", LeaseUntil: lapsed}, // declared lost by n3, live
		{ID: "n4", LeaseUntil: lapsed}, // declared lost by n5, down too
		{ID: "n5", LeaseUntil: lapsed},
	} {
		n.StartedAt, n.RenewedAt, n.Advertise = now.Add(-time.Minute), n.LeaseUntil.Add(-leaseTTL), "http://10.0.0.1:49982"
		if err := db.RenewNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for node, by := range map[string]string{"n2": "n3", "n4": "n5", "n5": "n3"} {
		if ok, err := db.DeclareNodeLost(ctx, node, by, lapsed, now); !ok || err != nil {
			t.Fatalf("declare %s lost: %v, %v", node, ok, err)
		}
	}
	persistent := store.SandboxLife{Persistent: true}
	for _, sb := range []*store.Sandbox{
		{ID: "p2", Node: "n2", State: "running", Life: persistent},
		{ID: "run4", Node: "n4", State: "running", Life: persistent},
		{ID: "pausing4", Node: "n4", State: "pausing", Life: persistent},
		{ID: "nocopy4", Node: "n4", State: "running", Life: persistent},
		{ID: "taken4", Node: "n4", State: "running", Life: persistent},
		{ID: "new4", Node: "n4", State: "creating", Life: persistent},
		{ID: "paused4", Node: "n4", State: "paused", Life: persistent},
	} {
		sb.Template, sb.Runtime = "base", "runc"
		if err := db.PutSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var asked []string
	w := &lossWatch{self: "n1", db: db, lease: fencedFlag(false), log: slog.New(slog.DiscardHandler), now: time.Now,
		recover: func(ctx context.Context, id string) (*sandbox.Recovered, error) {
			mu.Lock()
			asked = append(asked, id)
			mu.Unlock()
			switch id {
			case "nocopy4":
				return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q has no copy in the object store", id)
			case "taken4":
				return nil, fmt.Errorf("move: %w", store.ErrStale)
			}
			sb, err := db.GetSandbox(ctx, id)
			if err != nil {
				return nil, err
			}
			sb.State = "running"
			if err := db.MoveSandboxFromDown(ctx, sb, "n1", time.Now()); err != nil {
				return nil, err
			}
			return &sandbox.Recovered{Sandbox: sb, From: "n4", Copy: "paused image", CopyAt: now}, nil
		}}
	if err := w.scan(ctx); err != nil {
		t.Fatal(err)
	}
	w.wg.Wait()
	if err := w.scan(ctx); err != nil { // nothing more to recover
		t.Fatal(err)
	}
	w.wg.Wait()
	slices.Sort(asked)
	if want := []string{"nocopy4", "pausing4", "run4", "taken4", "taken4"}; !slices.Equal(asked, want) {
		t.Fatalf("recoveries asked: %v, want %v", asked, want)
	}
	for id, want := range map[string]string{"p2": "n2 running", "run4": "n1 running", "pausing4": "n1 running", "nocopy4": "n4 failed",
		"taken4": "n4 running", "new4": "n4 killed", "paused4": "n4 paused"} {
		sb, err := db.GetSandbox(ctx, id)
		if err != nil || sb.Node+" "+string(sb.State) != want {
			t.Fatalf("%s: %+v, %v; want %s", id, sb, err, want)
		}
		if id == "nocopy4" && sb.Error != `node n4 lost; not recovered: sandbox "nocopy4" has no copy in the object store` {
			t.Fatalf("nocopy4's error: %q", sb.Error)
		}
	}
}

// TestLeaseRejoin checks the fence and the return of a node declared
// lost: fenced after a lease period without a renewal; a renewal that
// finds the declaration kills the boxes (rejoin) before it clears it and
// lifts the fence; a failed rejoin leaves both.
func TestLeaseRejoin(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := newNodeLease(db, "n1", t.TempDir(), slog.New(slog.DiscardHandler))
	if l.fenced() {
		t.Fatal("fenced before the first renewal")
	}
	if err := l.renew(ctx); err != nil || l.fenced() {
		t.Fatalf("renew: %v, fenced %v", err, l.fenced())
	}
	l.renewedOK.Store(time.Now().Add(-leaseTTL).UnixNano())
	if !l.fenced() {
		t.Fatal("not fenced a lease period after the last renewal")
	}
	if ok, err := db.DeclareNodeLost(ctx, "n1", "n2", l.node.LeaseUntil, l.node.LeaseUntil.Add(time.Second)); !ok || err != nil {
		t.Fatalf("declare n1 lost: %v, %v", ok, err)
	}
	fail := true
	calls := 0
	l.rejoin = func(context.Context) error {
		calls++
		if fail {
			return errors.New("runtime unavailable")
		}
		return nil
	}
	if err := l.renew(ctx); err == nil || calls != 1 || !l.fenced() {
		t.Fatalf("renew with a failing rejoin: %v, %d calls, fenced %v", err, calls, l.fenced())
	}
	if n, _ := db.GetNode(ctx, "n1"); n.LostAt.IsZero() {
		t.Fatal("the declaration cleared though the boxes were not killed")
	}
	fail = false
	if err := l.renew(ctx); err != nil || calls != 2 || l.fenced() {
		t.Fatalf("renew with rejoin: %v, %d calls, fenced %v", err, calls, l.fenced())
	}
	if n, _ := db.GetNode(ctx, "n1"); !n.LostAt.IsZero() {
		t.Fatalf("declaration not cleared: %+v", n)
	}
	if err := l.renew(ctx); err != nil || calls != 2 {
		t.Fatalf("renew once back: %v, %d calls", err, calls)
	}
}

// TestPlaceMovesOnFromALapsedNode checks that a create forwarded to a node
// that stops answering mid-request (cut off: its connection hangs) is
// given up once that node's lease lapses, and placed on the next node.
func TestPlaceMovesOnFromALapsedNode(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	hung := make(chan struct{})
	far := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The node is cut off: its lease lapses, and it never answers.
		n2 := &store.Node{ID: "n2", StartedAt: now, RenewedAt: now.Add(-20 * time.Second), LeaseUntil: time.Now().Add(-time.Second), Advertise: "http://" + r.Host}
		if err := db.RenewNode(context.Background(), n2); err != nil {
			t.Error(err)
		}
		close(hung)
		io.Copy(io.Discard, r.Body) // so that the server sees the client go
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer far.Close()
	for _, n := range []*store.Node{
		{ID: "n1", StartedAt: now, RenewedAt: now, LeaseUntil: now.Add(time.Hour), Machine: store.NodeMachine{CPUCount: 8, Disks: []store.NodeDisk{{UsedBytes: 9, TotalBytes: 10}}}},
		{ID: "n2", StartedAt: now, RenewedAt: now, LeaseUntil: now.Add(time.Hour), Advertise: far.URL, Machine: store.NodeMachine{CPUCount: 64}},
	} {
		if err := db.RenewNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "created on n1")
	})
	f := newFleetRouter("n1", "the-cluster-key-0123", db, local, func(*http.Request) (proxy.Target, bool) { return proxy.Target{}, false }, slog.New(slog.DiscardHandler))
	f.leaseCheck = 20 * time.Millisecond
	w := httptest.NewRecorder()
	t0 := time.Now()
	f.ServeHTTP(w, httptest.NewRequest("POST", "/sandboxes", strings.NewReader(`{"templateID":"base"}`)))
	select {
	case <-hung:
	default:
		t.Fatal("the create did not go to n2, the better node, first")
	}
	if w.Code != http.StatusCreated || w.Body.String() != "created on n1" {
		t.Fatalf("create: %d %q, want it placed on n1", w.Code, w.Body)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("the create moved on after %s", d)
	}
}
