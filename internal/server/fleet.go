package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/dashboard"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp"
	"github.com/sbxdev/sbx/internal/proxy"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
)

// A fleet is several sbx serve nodes sharing one Postgres store, each
// started with --advertise and the same --cluster-key. Any node answers
// any request: one for a sandbox another node owns is streamed to that
// node (its advertise URL) with the cluster key added, and the owner serves
// it as if it had come directly, checking the client's API key or envd
// token itself. A create is placed on the best of K live nodes picked at
// random (placement.go).

// clusterKeyHeader carries the cluster key on requests one node forwards
// to another. A node takes a request carrying it as forwarded: it checks
// the key, removes the header and serves the request itself.
const clusterKeyHeader = "Sbx-Cluster-Key"

// maxCreateBody bounds a create request's body, which placement holds to
// retry it on another node (the API's own bound).
const maxCreateBody = 1 << 20

// fleetStore is what the fleet router needs of the shared store: the whole
// database, not a node's view.
type fleetStore interface {
	GetSandbox(ctx context.Context, id string) (*store.Sandbox, error)
	GetSnapshot(ctx context.Context, ref string) (*store.Snapshot, error)
	GetNode(ctx context.Context, id string) (*store.Node, error)
	ListNodes(ctx context.Context) ([]*store.Node, error)
	NodeLoads(ctx context.Context) (map[string]store.NodeLoad, error)
}

// fleetRouter sits in front of this node's handler (local) and sends what
// belongs to other nodes to them.
type fleetRouter struct {
	self  string // this node's name
	key   []byte // the cluster key
	db    fleetStore
	local http.Handler
	// route finds the sandbox a data-plane request is for.
	route func(*http.Request) (proxy.Target, bool)
	log   *slog.Logger
	rp    *httputil.ReverseProxy
	// create carries forwarded creates (whole answers, not streams).
	create *http.Client
	// streams carries the peers' dashboard streams (no time limit).
	streams *http.Client
	// owners caches the node of sandboxes found in the store, for a
	// moment: a sandbox moves only when another node takes it over.
	owners ownerCache
	// k is how many random live nodes placement compares (--placement-k).
	k int
	// leaseCheck is how often a request to another node checks that
	// node's lease (0: lossScan).
	leaseCheck time.Duration

	// boxes takes sandboxes over from other nodes through the object
	// store; nil without one (--object-store).
	boxes fleetBoxes
	// authorize reports whether request r carries an API key of team.
	authorize func(r *http.Request, team string) bool
}

// fleetBoxes is what the router needs of this node's Manager to take
// paused sandboxes over from other nodes (*sandbox.Manager, with its
// snapshots).
type fleetBoxes interface {
	Adopt(ctx context.Context, id string) (*store.Sandbox, error)
	// Recover brings a persistent sandbox of a node that is down back
	// from its newest copy in the object store, paused.
	Recover(ctx context.Context, id string) (*sandbox.Recovered, error)
	Resume(ctx context.Context, id string, opts sandbox.ResumeOptions) (*store.Sandbox, bool, error)
	// SnapshotPublished reports whether snapshot id is in the object
	// store, so that any node can make sandboxes from it.
	SnapshotPublished(ctx context.Context, id string) (bool, error)
}

// ownerCache maps sandbox ids to their node, up to ownerCacheMax ids
// (emptied when full), each for ownerTTL: a sandbox another node took
// over is found there within that time.
type ownerCache struct {
	mu sync.Mutex
	m  map[string]ownerEntry
}

type ownerEntry struct {
	node string
	at   time.Time
}

const (
	ownerCacheMax = 1 << 16
	ownerTTL      = 2 * time.Second
)

func (c *ownerCache) get(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || time.Since(e.at) > ownerTTL {
		return "", false
	}
	return e.node, true
}

func (c *ownerCache) put(id, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= ownerCacheMax {
		c.m = map[string]ownerEntry{}
	}
	c.m[id] = ownerEntry{node, time.Now()}
}

// ownerOf returns the node holding sandbox id; "" for an unknown id (or
// a record made before nodes had names), which this node answers.
func (f *fleetRouter) ownerOf(ctx context.Context, id string) string {
	if n, ok := f.owners.get(id); ok {
		return n
	}
	sb, err := f.db.GetSandbox(ctx, id)
	if err != nil {
		if !errors.Is(err, errdefs.ErrNotFound) {
			f.log.Warn("fleet: look up a sandbox's node", "sandbox_id", id, "err", err)
		}
		return ""
	}
	f.owners.put(id, sb.Node)
	return sb.Node
}

// forwardTo is the context key of a forwarded request's target.
type forwardTo struct{}

// forwardTarget is where a request is forwarded and why.
type forwardTarget struct {
	base          *url.URL
	node, sandbox string
}

func newFleetRouter(self, key string, db fleetStore, local http.Handler, route func(*http.Request) (proxy.Target, bool), log *slog.Logger) *fleetRouter {
	f := &fleetRouter{self: self, key: []byte(key), db: db, local: local, route: route, log: log, k: defaultPlacementK}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	h1 := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: 0}
	h2 := &http.Transport{DialContext: dialer.DialContext, IdleConnTimeout: 90 * time.Second}
	var p http.Protocols
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	h2.Protocols = &p
	f.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(forwardTo{}).(forwardTarget)
			pr.SetURL(t.base)
			pr.Out.Host = pr.In.Host // the owner routes by it as this node did
			// The client's address joins the chain it came with, as the
			// proxy keeps it.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
			pr.Out.Header.Set(clusterKeyHeader, key)
		},
		Transport:     protoTransport{h1: h1, h2: h2},
		FlushInterval: -1, // streams (process output, watches, PTYs) are not buffered
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t, _ := r.Context().Value(forwardTo{}).(forwardTarget)
			if r.Context().Err() != nil {
				return // the client went away
			}
			errhttp.Write(w, r, log, errdefs.Wrap(errdefs.ErrUnavailable, err, "node %s, which holds sandbox %s, did not answer", t.node, t.sandbox))
		},
	}
	f.create = &http.Client{Transport: h1, Timeout: 10 * time.Minute}
	f.streams = &http.Client{Transport: h1}
	return f
}

// dashboardPeers returns the other live nodes, each able to open its own
// dashboard sandbox stream (?scope=node) for a browser's request, with the
// browser's credentials and the cluster key: the dashboard merges them
// into the fleet's list (internal/dashboard/fleet.go).
func (f *fleetRouter) dashboardPeers(ctx context.Context) ([]dashboard.Peer, error) {
	nodes, err := f.liveNodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []dashboard.Peer
	for _, n := range nodes {
		if n.ID == f.self || n.Advertise == "" {
			continue
		}
		base, err := url.Parse(n.Advertise)
		if err != nil {
			f.log.Warn("fleet: a node advertises a bad URL", "node", n.ID, "err", err)
			continue
		}
		id := n.ID
		out = append(out, dashboard.Peer{Name: id, Open: func(ctx context.Context, r *http.Request) (io.ReadCloser, error) {
			u := base.JoinPath("/dashboard/api/sandboxes/stream")
			u.RawQuery = "scope=node"
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return nil, err
			}
			for _, h := range []string{"Cookie", "X-API-Key", "Authorization", "User-Agent"} {
				if v := r.Header.Values(h); len(v) > 0 {
					req.Header[h] = v
				}
			}
			req.Header.Set("Accept", "text/event-stream")
			req.Header.Set(clusterKeyHeader, string(f.key))
			req.Host = r.Host
			resp, err := f.streams.Do(req)
			if err != nil {
				return nil, fmt.Errorf("node %s: %w", id, err)
			}
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				return nil, fmt.Errorf("node %s answered %s: %s", id, resp.Status, bytes.TrimSpace(b))
			}
			return resp.Body, nil
		}})
	}
	return out, nil
}

// protoTransport forwards HTTP/2 requests (gRPC, Connect over h2c) over
// HTTP/2 and the rest (upgrades included) over HTTP/1.1.
type protoTransport struct{ h1, h2 http.RoundTripper }

func (t protoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ProtoMajor == 2 && r.Header.Get("Upgrade") == "" {
		return t.h2.RoundTrip(r)
	}
	return t.h1.RoundTrip(r)
}

func (f *fleetRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if vs := r.Header.Values(clusterKeyHeader); len(vs) > 0 {
		if len(vs) != 1 || subtle.ConstantTimeCompare([]byte(vs[0]), f.key) != 1 {
			errhttp.Write(w, r, f.log, errdefs.New(errdefs.ErrPermissionDenied, "wrong cluster key on a forwarded request"))
			return
		}
		// Forwarded by another node: this one serves it, and the key
		// goes no further (not to the sandbox, not to another node).
		r.Header.Del(clusterKeyHeader)
		if strings.HasPrefix(r.URL.Path, "/fleet/") {
			f.internal(w, r)
			return
		}
		f.local.ServeHTTP(w, r)
		return
	}
	if node := nodeOf(r); node != "" && node != f.self {
		// A node's status and drain are the node's to change (an unknown
		// node is the API's to refuse).
		if _, err := f.db.GetNode(r.Context(), node); err == nil {
			f.forward(w, r, node, "")
			return
		}
	}
	if id := f.sandboxOf(r); id != "" {
		if node := f.ownerOf(r.Context(), id); node != "" && node != f.self {
			if f.takeOver(w, r, node, id) {
				return
			}
			f.forward(w, r, node, id)
			return
		}
		// Unknown ids, and this node's sandboxes, are this node's to answer.
		f.local.ServeHTTP(w, r)
		return
	}
	if ref, ok := strings.CutPrefix(r.URL.Path, "/templates/"); ok && r.Method == http.MethodDelete && !strings.Contains(ref, "/") {
		// A snapshot's files are on the node that took it.
		if sn, err := f.db.GetSnapshot(r.Context(), ref); err == nil && sn.Node != "" && sn.Node != f.self {
			f.forward(w, r, sn.Node, sn.SandboxID)
			return
		}
	}
	if r.URL.Path == "/sandboxes" || r.URL.Path == "/v2/sandboxes" {
		switch r.Method {
		case http.MethodPost:
			f.place(w, r)
			return
		case http.MethodGet:
			f.list(w, r)
			return
		}
	}
	f.local.ServeHTTP(w, r)
}

// nodeOf returns the node of POST /nodes/{nodeID} and POST
// /nodes/{nodeID}/drain; "" for any other request.
func nodeOf(r *http.Request) string {
	if r.Method != http.MethodPost {
		return ""
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/nodes/")
	if !ok {
		return ""
	}
	id, sub, _ := strings.Cut(rest, "/")
	if sub != "" && sub != "drain" {
		return ""
	}
	return id
}

// takeOver serves a resume (or connect) of sandbox id whose node is down
// by taking the sandbox over here from the object store, and reports
// whether it answered: a paused one from the copy of its pause, a
// persistent one that was running (its box lost with the node) from its
// last copy, what it did since lost. The caller's API key must be of the
// sandbox's team: nothing moves for a request that would be refused.
func (f *fleetRouter) takeOver(w http.ResponseWriter, r *http.Request, node, id string) bool {
	if f.boxes == nil || r.Method != http.MethodPost {
		return false
	}
	p := strings.TrimPrefix(r.URL.Path, "/v2")
	if p != "/sandboxes/"+id+"/resume" && p != "/sandboxes/"+id+"/connect" {
		return false
	}
	if _, err := f.nodeURL(r.Context(), node); err == nil || !errors.Is(err, errdefs.ErrUnavailable) {
		return false // the owner answers for it
	}
	sb, err := f.db.GetSandbox(r.Context(), id)
	if err != nil || f.authorize == nil || !f.authorize(r, sb.Team) {
		return false // the owner's 503, or the local refusal
	}
	switch {
	case sb.State == sandbox.StatePaused:
		_, err = f.boxes.Adopt(r.Context(), id)
	case sb.Life.Persistent && (sb.State == sandbox.StateRunning || sb.State == sandbox.StatePausing || sb.State == sandbox.StateResuming):
		var rc *sandbox.Recovered
		if rc, err = f.boxes.Recover(r.Context(), id); err == nil {
			f.log.Warn("fleet: recovered a sandbox of a node that is down from its newest copy", "sandbox_id", id, "node", node, "copy", rc.Copy, "copy_at", rc.CopyAt)
		}
	default:
		return false
	}
	if err != nil {
		errhttp.Write(w, r, f.log, fmt.Errorf("sandbox %s: its node %s is down, and it could not be taken over: %w", id, node, err))
		return true
	}
	f.owners.put(id, f.self)
	f.log.Info("fleet: took over a sandbox of a node that is down", "sandbox_id", id, "node", node)
	f.local.ServeHTTP(w, r)
	return true
}

// adoptRequest is the body of POST /fleet/adopt/{id}, one node asking
// another to take sandbox id over.
type adoptRequest struct {
	// Resume runs the sandbox once taken over, to live TimeoutMs (0: no
	// limit).
	Resume    bool  `json:"resume"`
	TimeoutMs int64 `json:"timeoutMs"`
}

// adoptAnswer is its answer.
type adoptAnswer struct {
	Node  string `json:"node"`
	State string `json:"state"`
}

// internal serves the node-to-node routes, which only requests carrying
// the cluster key reach: POST /fleet/adopt/{id}.
func (f *fleetRouter) internal(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/fleet/adopt/")
	if !ok || r.Method != http.MethodPost || id == "" || strings.Contains(id, "/") {
		errhttp.Write(w, r, f.log, errdefs.New(errdefs.ErrNotFound, "no route for %s %s", r.Method, r.URL.Path))
		return
	}
	if f.boxes == nil {
		errhttp.Write(w, r, f.log, errdefs.New(errdefs.ErrFailedPrecondition, "node %s has no object store to take sandbox %s over through", f.self, id))
		return
	}
	var req adoptRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || req.TimeoutMs < 0 {
		errhttp.Write(w, r, f.log, errdefs.New(errdefs.ErrInvalidArgument, "bad take-over request"))
		return
	}
	sb, err := f.boxes.Adopt(r.Context(), id)
	if err != nil {
		errhttp.Write(w, r, f.log, err)
		return
	}
	f.owners.put(id, f.self)
	if req.Resume {
		d := time.Duration(req.TimeoutMs) * time.Millisecond
		if sb, _, err = f.boxes.Resume(r.Context(), id, sandbox.ResumeOptions{Timeout: &d}); err != nil {
			errhttp.Write(w, r, f.log, fmt.Errorf("sandbox %s, taken over: %w", id, err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(adoptAnswer{Node: f.self, State: string(sb.State)})
}

// adoptOn asks node n to take paused sandbox id over (and resume it to
// live left, 0: no limit).
func (f *fleetRouter) adoptOn(ctx context.Context, n *store.Node, id string, resume bool, left time.Duration) (*adoptAnswer, error) {
	u, err := url.Parse(n.Advertise)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(adoptRequest{Resume: resume, TimeoutMs: left.Milliseconds()})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.JoinPath("/fleet/adopt", id).String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set(clusterKeyHeader, string(f.key))
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.create.Do(req)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "node %s did not answer", n.ID)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node %s: %s: %s", n.ID, resp.Status, strings.TrimSpace(string(b)))
	}
	var a adoptAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.ID, err)
	}
	return &a, nil
}

// sandboxOf returns the sandbox a request is for: a data-plane request's,
// or the {id} of an API route /sandboxes/{id}[/...] (or /v2/..., or the
// dashboard's /dashboard/api/...); "" for any other request.
func (f *fleetRouter) sandboxOf(r *http.Request) string {
	if t, ok := f.route(r); ok {
		return t.SandboxID
	}
	p := strings.TrimPrefix(r.URL.Path, "/v2")
	if d, ok := strings.CutPrefix(r.URL.Path, "/dashboard/api"); ok {
		if d == "/sandboxes/stream" {
			return ""
		}
		p = d
	}
	rest, ok := strings.CutPrefix(p, "/sandboxes/")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	if id == "metrics" && r.Method == http.MethodGet && !strings.Contains(rest, "/") {
		return "" // GET /sandboxes/metrics
	}
	return id
}

// forward streams r to node, which owns sandbox id.
func (f *fleetRouter) forward(w http.ResponseWriter, r *http.Request, node, id string) {
	base, err := f.nodeURL(r.Context(), node)
	if err != nil {
		if id == "" {
			errhttp.Write(w, r, f.log, fmt.Errorf("node %s: %w", node, err))
			return
		}
		errhttp.Write(w, r, f.log, fmt.Errorf("sandbox %s: %w", id, err))
		return
	}
	ctx := context.WithValue(r.Context(), forwardTo{}, forwardTarget{base: base, node: node, sandbox: id})
	// Streams go both ways at once (a Connect stream's request body may
	// still be arriving when the answer starts): without full duplex an
	// HTTP/1.1 server would close the request body at the first write of
	// the answer, and the transport would cut the stream.
	http.NewResponseController(w).EnableFullDuplex()
	f.rp.ServeHTTP(w, r.WithContext(ctx))
}

// nodeURL returns the advertise URL of a live node.
func (f *fleetRouter) nodeURL(ctx context.Context, node string) (*url.URL, error) {
	n, err := f.db.GetNode(ctx, node)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.New(errdefs.ErrUnavailable, "its node %s is not a member of the fleet", node)
	}
	if err != nil {
		return nil, err
	}
	if !n.LeaseUntil.After(time.Now()) {
		return nil, errdefs.New(errdefs.ErrUnavailable, "its node %s is down (its lease ran out at %s)", node, n.LeaseUntil.Format(time.RFC3339))
	}
	if n.Advertise == "" {
		return nil, errdefs.New(errdefs.ErrUnavailable, "its node %s takes no forwarded requests (no --advertise)", node)
	}
	u, err := url.Parse(n.Advertise)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "node %s advertises a bad URL", node)
	}
	return u, nil
}

// place serves a create: on the best of K live nodes picked at random
// (placement.go), or, where that node refuses it for capacity (503) or
// does not answer, on the others in order of score. The last
// refusal is the answer: a full fleet answers 503. A create from a
// snapshot goes to the snapshot's node, one that mounts volumes stays on
// this node.
func (f *fleetRouter) place(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCreateBody))
	if err != nil {
		errhttp.Write(w, r, f.log, errdefs.Wrap(errdefs.ErrTooLarge, err, "request body larger than %d bytes", maxCreateBody))
		return
	}
	var req struct {
		TemplateID   string            `json:"templateID"`
		VolumeMounts []json.RawMessage `json:"volumeMounts"`
	}
	json.Unmarshal(body, &req) // a bad body is the node's to refuse
	var cands []*store.Node
	sn, snErr := f.db.GetSnapshot(r.Context(), req.TemplateID)
	if snErr == nil && f.boxes != nil && len(req.VolumeMounts) == 0 {
		// A snapshot in the object store starts on any node.
		if ok, err := f.boxes.SnapshotPublished(r.Context(), sn.ID); err == nil && ok {
			sn, snErr = nil, errdefs.ErrNotFound
		}
	}
	switch {
	case req.TemplateID != "" && snErr == nil && sn.Node != "" && sn.Node != f.self:
		// A snapshot resumes where its files are.
		base, err := f.nodeURL(r.Context(), sn.Node)
		if err != nil {
			errhttp.Write(w, r, f.log, fmt.Errorf("snapshot %s: %w", req.TemplateID, err))
			return
		}
		cands = []*store.Node{{ID: sn.Node, Advertise: base.String()}}
	case req.TemplateID != "" && snErr == nil, len(req.VolumeMounts) > 0:
		// This node's snapshot; volumes are on the node they were made on,
		// which is not recorded: the node asked is the best guess.
		cands = []*store.Node{{ID: f.self}}
	default:
		cands, err = f.candidates(r.Context(), req.TemplateID)
		if err == nil && len(cands) == 0 {
			errhttp.Write(w, r, f.log, errdefs.New(errdefs.ErrUnavailable, "no node takes sandboxes: every live node is draining"))
			return
		}
		if err != nil {
			f.log.Warn("placement: no node list; creating here", "err", err)
			cands = []*store.Node{{ID: f.self}}
		}
	}
	var last *bufferedResponse
	for _, n := range cands {
		res := f.tryCreate(r, body, n)
		if res.status != http.StatusServiceUnavailable {
			res.writeTo(w)
			return
		}
		f.log.Info("placement: node refused a create", "node", n.ID)
		last = res
	}
	last.writeTo(w)
}

// tryCreate runs the create on node n, holding its (small) answer.
func (f *fleetRouter) tryCreate(r *http.Request, body []byte, n *store.Node) *bufferedResponse {
	if n.ID == f.self {
		return f.runLocal(r, body)
	}
	return f.runRemote(r, body, n)
}

// runLocal serves r (with body, when not nil) on this node, holding the
// answer.
func (f *fleetRouter) runLocal(r *http.Request, body []byte) *bufferedResponse {
	res := &bufferedResponse{header: http.Header{}}
	lr := r.Clone(r.Context())
	if body != nil {
		lr.Body = io.NopCloser(bytes.NewReader(body))
		lr.ContentLength = int64(len(body))
	}
	f.local.ServeHTTP(res, lr)
	if res.status == 0 {
		res.status = http.StatusOK
	}
	return res
}

// runRemote sends r (with body) to node n, holding the answer; a node that
// does not answer is a 503.
func (f *fleetRouter) runRemote(r *http.Request, body []byte, n *store.Node) *bufferedResponse {
	unavailable := func(err error) *bufferedResponse {
		res := &bufferedResponse{header: http.Header{}}
		errhttp.Write(res, r, f.log, errdefs.Wrap(errdefs.ErrUnavailable, err, "node %s did not answer", n.ID))
		return res
	}
	u, err := url.Parse(n.Advertise)
	if err != nil {
		return unavailable(err)
	}
	u = u.JoinPath(r.URL.Path)
	u.RawQuery = r.URL.RawQuery
	// A node cut off mid-request answers nothing, and a connection to it
	// may hang for minutes: the request is given up once the node's lease
	// lapses (the fleet then ends what it had begun: loss.go), so that a
	// create moves on to another node.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	go f.watchLease(ctx, cancel, n.ID)
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return unavailable(err)
	}
	req.Header = r.Header.Clone()
	req.Host = r.Host
	req.Header.Set(clusterKeyHeader, string(f.key))
	resp, err := f.create.Do(req)
	if err != nil {
		if c := context.Cause(ctx); c != nil && r.Context().Err() == nil {
			err = c
		}
		return unavailable(err)
	}
	defer resp.Body.Close()
	out := &bufferedResponse{header: resp.Header.Clone(), status: resp.StatusCode}
	if _, err := io.Copy(&out.body, io.LimitReader(resp.Body, 64<<20)); err != nil {
		return unavailable(err)
	}
	out.header.Del("Content-Length")
	return out
}

// errLeaseLapsed cancels a request to a node whose lease lapsed.
var errLeaseLapsed = errors.New("its lease lapsed during the request")

// watchLease cancels ctx with errLeaseLapsed once node's lease lapses,
// checking every f.leaseCheck, until ctx ends.
func (f *fleetRouter) watchLease(ctx context.Context, cancel context.CancelCauseFunc, node string) {
	every := f.leaseCheck
	if every == 0 {
		every = lossScan
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := f.db.GetNode(ctx, node)
			if (err == nil && !n.LeaseUntil.After(time.Now())) || errors.Is(err, errdefs.ErrNotFound) {
				cancel(errLeaseLapsed)
				return
			}
		}
	}
}

// candidates returns the live nodes that take creates (not draining), in
// placement order
// for a create of template tpl (placement.go).
func (f *fleetRouter) candidates(ctx context.Context, tpl string) ([]*store.Node, error) {
	live, err := f.liveNodes(ctx)
	if err != nil {
		return nil, err
	}
	live = slices.DeleteFunc(live, func(n *store.Node) bool { return !n.DrainingSince.IsZero() })
	loads, err := f.db.NodeLoads(ctx)
	if err != nil {
		return nil, err
	}
	out := order(live, loads, tpl, f.k, rand.Perm)
	if f.log.Enabled(ctx, slog.LevelDebug) {
		var picks []string
		for _, n := range out {
			picks = append(picks, fmt.Sprintf("%s:%.3f", n.ID, score(n, loads[n.ID], tpl)))
		}
		f.log.Debug("placement", "template", tpl, "order", strings.Join(picks, " "))
	}
	return out, nil
}

// liveNodes returns the nodes whose lease is live and that take forwarded
// requests (this one included).
func (f *fleetRouter) liveNodes(ctx context.Context) ([]*store.Node, error) {
	nodes, err := f.db.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return slices.DeleteFunc(nodes, func(n *store.Node) bool {
		return !n.LeaseUntil.After(now) || !n.LostAt.IsZero() || (n.Advertise == "" && n.ID != f.self)
	}), nil
}

// list answers GET /sandboxes and /v2/sandboxes for the whole fleet: each
// live node lists its own sandboxes (this one first, whose answer stands
// for a request it refuses), and the lists are merged, newest first (or
// oldest, for order=asc), and paged here. A node that does not answer is
// left out: its sandboxes cannot be reached either.
func (f *fleetRouter) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v2 := r.URL.Path == "/v2/sandboxes"
	offset, limit := 0, 0
	if v2 {
		var err error
		if offset, err = atoiOr(q.Get("nextToken"), 0); err != nil || offset < 0 {
			errhttp.Write(w, r, f.log, errdefs.New(errdefs.ErrInvalidArgument, "invalid nextToken"))
			return
		}
		if limit, err = atoiOr(q.Get("limit"), 100); err != nil || limit < 0 {
			errhttp.Write(w, r, f.log, errdefs.New(errdefs.ErrInvalidArgument, "invalid limit"))
			return
		}
		if limit == 0 || limit > 1000 {
			limit = 1000
		}
		// Each node's whole list (up to the API's page bound); the
		// fleet's pages are cut here.
		q.Del("nextToken")
		q.Set("limit", "1000")
	}
	sub := r.Clone(r.Context())
	sub.URL.RawQuery = q.Encode()
	sub.RequestURI = ""
	nodes, err := f.liveNodes(r.Context())
	if err != nil {
		f.log.Warn("fleet list: no node list; listing this node's", "err", err)
	}
	mine := f.runLocal(sub, nil)
	if mine.status != http.StatusOK {
		mine.writeTo(w)
		return
	}
	answers := []*bufferedResponse{mine}
	for _, n := range nodes {
		if n.ID == f.self {
			continue
		}
		res := f.runRemote(sub, nil, n)
		if res.status != http.StatusOK {
			f.log.Warn("fleet list: a node did not list its sandboxes", "node", n.ID, "status", res.status)
			continue
		}
		answers = append(answers, res)
	}
	type item struct {
		raw     json.RawMessage
		started time.Time
	}
	var all []item
	running := 0
	for _, a := range answers {
		var page []json.RawMessage
		if err := json.Unmarshal(a.body.Bytes(), &page); err != nil {
			errhttp.Write(w, r, f.log, fmt.Errorf("fleet list: %w", err))
			return
		}
		for _, raw := range page {
			var sb struct {
				StartedAt time.Time `json:"startedAt"`
			}
			json.Unmarshal(raw, &sb)
			all = append(all, item{raw, sb.StartedAt})
		}
		n, _ := strconv.Atoi(a.header.Get("X-Total-Running"))
		running += n
	}
	asc := q.Get("order") == "asc"
	slices.SortStableFunc(all, func(a, b item) int {
		if asc {
			return a.started.Compare(b.started)
		}
		return b.started.Compare(a.started)
	})
	if v2 {
		offset = min(offset, len(all))
		all = all[offset:]
		if len(all) > limit {
			all = all[:limit]
			w.Header().Set("X-Next-Token", strconv.Itoa(offset+limit))
		}
		w.Header().Set("X-Total-Running", strconv.Itoa(running))
	}
	out := make([]json.RawMessage, 0, len(all))
	for _, it := range all {
		out = append(out, it.raw)
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(append(b, '\n'))
}

func atoiOr(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	return strconv.Atoi(s)
}

// bufferedResponse holds a whole (small) answer so that placement can
// drop a refusal and try another node.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) writeTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.WriteHeader(b.status)
	w.Write(b.body.Bytes())
}
