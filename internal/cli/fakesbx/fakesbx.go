// Package fakesbx is a small in-memory stand-in for `sbx serve`, for the
// tests of the Go SDK and the CLI: the REST control plane keeps sandboxes in
// a map, and the data plane's process service runs commands on the local
// machine as the test's own user. It checks the headers a real server
// checks (API key, sandbox routing, access token) and records every request.
// It is not a sandbox and must only ever listen on loopback.
package fakesbx

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/gen/process/processconnect"
)

// Request is one request the fake received.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   string
}

// Sandbox is the fake's record of a sandbox.
type Sandbox struct {
	ID, Template, Token string
	Metadata, Env       map[string]string
	// Timeout is the last timeout asked for in seconds; nil when the
	// request left it out.
	Timeout   *int
	StartedAt time.Time
	EndAt     time.Time
	State     string
	// Runtime is the runtime asked for, "runc" when none was.
	Runtime string
}

// Server is the fake. Its exported fields may be changed before requests are
// made; use Lock around reads of them while requests are in flight.
type Server struct {
	sync.Mutex
	URL    string
	APIKey string
	// PageSize is the list page size when the request has no limit.
	PageSize  int
	Sandboxes []*Sandbox
	Requests  []Request
	// Users records the user (from Authorization: Basic) of every
	// data-plane call, "" when none was sent.
	Users []string
	// Resizes records every PTY resize.
	Resizes [][2]uint32 // cols, rows
	// Templates are served by GET /templates.
	Templates []map[string]any

	srv   *httptest.Server
	procs map[uint32]*proc
	next  int
}

// New starts a fake on a loopback port; it is closed when t ends.
func New(t testing.TB) *Server {
	s := &Server{
		APIKey:   "e2b_" + strings.Repeat("ab", 20),
		PageSize: 100,
		procs:    map[uint32]*proc{},
		Templates: []map[string]any{{
			"templateID": "base", "aliases": []string{"default"}, "cpuCount": 2, "memoryMB": 512,
			"diskSizeMB": 1024, "sizeBytes": 123456789, "createdAt": "2025-01-02T03:04:05Z", "buildStatus": "ready",
		}},
	}
	path, h := processconnect.NewProcessHandler(&procService{s: s})
	mux := http.NewServeMux()
	mux.Handle(path, h)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		s.Lock()
		s.Requests = append(s.Requests, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)})
		s.Unlock()
		if id := r.Header.Get("E2b-Sandbox-Id"); id != "" {
			s.dataPlane(w, r, id, mux)
			return
		}
		s.rest(w, r, body)
	}))
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the fake and kills the processes it started.
func (s *Server) Close() {
	s.srv.Close()
	s.Lock()
	defer s.Unlock()
	for _, p := range s.procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Find returns the sandbox with id, or nil.
func (s *Server) Find(id string) *Sandbox {
	s.Lock()
	defer s.Unlock()
	return s.find(id)
}

func (s *Server) find(id string) *Sandbox {
	for _, sb := range s.Sandboxes {
		if sb.ID == id {
			return sb
		}
	}
	return nil
}

// Last returns the last request whose path starts with prefix.
func (s *Server) Last(prefix string) (Request, bool) {
	s.Lock()
	defer s.Unlock()
	for i := len(s.Requests) - 1; i >= 0; i-- {
		if strings.HasPrefix(s.Requests[i].Path, prefix) {
			return s.Requests[i], true
		}
	}
	return Request{}, false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"code": status, "message": msg})
}

func (s *Server) dataPlane(w http.ResponseWriter, r *http.Request, id string, mux *http.ServeMux) {
	if r.Header.Get("E2b-Sandbox-Port") != "49983" {
		writeErr(w, http.StatusBadGateway, "fake serves only the envd port")
		return
	}
	sb := s.Find(id)
	if sb == nil {
		writeErr(w, http.StatusNotFound, "sandbox not found")
		return
	}
	if r.Header.Get("X-Access-Token") != sb.Token {
		writeErr(w, http.StatusUnauthorized, "bad access token")
		return
	}
	user := ""
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Basic "); ok {
		b, _ := base64.StdEncoding.DecodeString(a)
		user = strings.TrimSuffix(string(b), ":")
	}
	s.Lock()
	s.Users = append(s.Users, user)
	s.Unlock()
	mux.ServeHTTP(w, r)
}

func (s *Server) info(sb *Sandbox, detail bool) map[string]any {
	m := map[string]any{
		"sandboxID": sb.ID, "templateID": sb.Template, "clientID": "fake",
		"startedAt": sb.StartedAt.Format(time.RFC3339), "endAt": sb.EndAt.Format(time.RFC3339),
		"cpuCount": 2, "memoryMB": 512, "diskSizeMB": 1024, "envdVersion": "0.5.0",
		"metadata": sb.Metadata, "state": sb.State, "runtime": sb.Runtime,
	}
	if detail {
		m["envdAccessToken"] = sb.Token
		m["domain"] = "sbx.local"
	}
	return m
}

func (s *Server) created(sb *Sandbox) map[string]any {
	return map[string]any{
		"sandboxID": sb.ID, "templateID": sb.Template, "clientID": "fake", "envdVersion": "0.5.0",
		"envdAccessToken": sb.Token, "domain": "sbx.local", "trafficAccessToken": "", "runtime": sb.Runtime,
	}
}

func (s *Server) setTimeout(sb *Sandbox, t *int) {
	sb.Timeout = t
	switch {
	case t == nil:
		sb.EndAt = time.Now().UTC().Add(5 * time.Minute).Truncate(time.Second)
	case *t == 0:
		sb.EndAt = time.Time{}
	default:
		sb.EndAt = time.Now().UTC().Add(time.Duration(*t) * time.Second).Truncate(time.Second)
	}
}

func (s *Server) rest(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.URL.Path == "/health" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.Header.Get("X-API-Key") != s.APIKey {
		writeErr(w, http.StatusUnauthorized, "invalid API key")
		return
	}
	s.Lock()
	defer s.Unlock()
	p := r.URL.Path
	switch {
	case r.Method == "POST" && (p == "/v2/sandboxes" || p == "/sandboxes"):
		var req struct {
			TemplateID string            `json:"templateID"`
			Timeout    *int              `json:"timeout"`
			Metadata   map[string]string `json:"metadata"`
			EnvVars    map[string]string `json:"envVars"`
			Runtime    string            `json:"runtime"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeErr(w, 400, "bad body: "+err.Error())
			return
		}
		switch req.Runtime {
		case "":
			req.Runtime = "runc"
		case "runc", "runsc":
		default:
			writeErr(w, 400, fmt.Sprintf("unknown runtime %q; available: runc, runsc", req.Runtime))
			return
		}
		if req.TemplateID != "base" {
			writeErr(w, 404, "template "+req.TemplateID+" not found")
			return
		}
		s.next++
		tok := make([]byte, 8)
		_, _ = rand.Read(tok)
		sb := &Sandbox{ID: fmt.Sprintf("sb%04d", s.next), Template: req.TemplateID, Token: hex.EncodeToString(tok),
			Metadata: req.Metadata, Env: req.EnvVars, Runtime: req.Runtime, StartedAt: time.Now().UTC().Truncate(time.Second), State: "running"}
		s.setTimeout(sb, req.Timeout)
		s.Sandboxes = append(s.Sandboxes, sb)
		writeJSON(w, 201, s.created(sb))
	case r.Method == "GET" && p == "/v2/sandboxes":
		q := r.URL.Query()
		md, _ := url.ParseQuery(q.Get("metadata"))
		states := q["state"]
		if len(states) == 0 {
			states = []string{"running"}
		}
		var match []*Sandbox
		for _, sb := range s.Sandboxes {
			ok := false
			for _, st := range states {
				ok = ok || st == sb.State
			}
			for k := range md {
				ok = ok && sb.Metadata[k] == md.Get(k)
			}
			if ok {
				match = append(match, sb)
			}
		}
		size := s.PageSize
		if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 {
			size = l
		}
		start, _ := strconv.Atoi(q.Get("nextToken"))
		end := min(start+size, len(match))
		out := []map[string]any{}
		for _, sb := range match[min(start, len(match)):end] {
			out = append(out, s.info(sb, false))
		}
		if end < len(match) {
			w.Header().Set("X-Next-Token", strconv.Itoa(end))
		}
		writeJSON(w, 200, out)
	case strings.HasPrefix(p, "/sandboxes/") || strings.HasPrefix(p, "/v2/sandboxes/"):
		rest := strings.TrimPrefix(strings.TrimPrefix(p, "/v2"), "/sandboxes/")
		id, action, _ := strings.Cut(rest, "/")
		sb := s.find(id)
		if sb == nil {
			writeErr(w, 404, "sandbox "+id+" not found")
			return
		}
		var req struct {
			Timeout *int `json:"timeout"`
		}
		_ = json.Unmarshal(body, &req)
		switch {
		case r.Method == "GET" && action == "":
			writeJSON(w, 200, s.info(sb, true))
		case r.Method == "DELETE" && action == "":
			for i, x := range s.Sandboxes {
				if x == sb {
					s.Sandboxes = append(s.Sandboxes[:i], s.Sandboxes[i+1:]...)
					break
				}
			}
			w.WriteHeader(204)
		case r.Method == "POST" && action == "timeout":
			if req.Timeout == nil {
				writeErr(w, 400, "timeout required")
				return
			}
			s.setTimeout(sb, req.Timeout)
			w.WriteHeader(204)
		case r.Method == "POST" && action == "connect":
			if req.Timeout != nil {
				s.setTimeout(sb, req.Timeout)
			}
			sb.State = "running"
			writeJSON(w, 200, s.created(sb))
		default:
			writeErr(w, 404, "no route")
		}
	case r.Method == "GET" && p == "/sbx/v1/keys":
		writeJSON(w, 200, []map[string]any{{"id": "k1", "name": "admin", "prefix": "e2b_abab", "createdAt": "2025-01-02T03:04:05Z", "admin": true}})
	case r.Method == "POST" && p == "/sbx/v1/keys":
		var req struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(body, &req)
		writeJSON(w, 201, map[string]any{"id": "k2", "name": req.Name, "key": "e2b_" + strings.Repeat("cd", 20), "createdAt": "2025-01-02T03:04:05Z", "admin": false})
	case r.Method == "DELETE" && strings.HasPrefix(p, "/sbx/v1/keys/"):
		if strings.TrimPrefix(p, "/sbx/v1/keys/") != "k1" {
			writeErr(w, 404, "key not found")
			return
		}
		w.WriteHeader(204)
	case r.Method == "GET" && p == "/templates":
		writeJSON(w, 200, s.Templates)
	case (r.Method == "GET" || r.Method == "PATCH") && strings.HasPrefix(p, "/sbx/v1/templates/"):
		if strings.TrimPrefix(p, "/sbx/v1/templates/") != "web" {
			writeErr(w, 404, "template not found")
			return
		}
		d := map[string]any{
			"templateID": "web", "createdAt": "2025-01-02T03:04:05Z", "source": "registry 127.0.0.1:5000/web:1",
			"sizeBytes": 3 << 20, "diskBytes": 3<<20 + 4096,
			"layers":      []map[string]any{{"digest": "sha256:" + strings.Repeat("a1", 32), "sizeBytes": 1 << 20}},
			"defaultUser": "app", "env": []string{"PATH=/usr/bin", "MODE=prod"}, "workdir": "/srv",
			"startCmd": []string{"/bin/sh", "-c", "python3 -m http.server 8000"}, "readyPort": 8000, "readyTimeout": 30,
			"cpuCount": 1, "memoryMB": 512, "cpuCountSet": false, "memoryMBSet": true, "sandboxes": 2,
		}
		if r.Method == "PATCH" {
			var req map[string]any
			if err := json.Unmarshal(body, &req); err != nil {
				writeErr(w, 400, "malformed JSON body")
				return
			}
			for k, v := range req {
				d[k] = v
			}
			if c, ok := req["cpuCount"]; ok {
				d["cpuCount"], d["cpuCountSet"] = c, c != 0.0
			}
			// The settings' shapes differ from the detail's for these.
			if env, ok := req["env"].(map[string]any); ok {
				kv := []string{}
				for k, v := range env {
					kv = append(kv, fmt.Sprintf("%s=%v", k, v))
				}
				sort.Strings(kv)
				d["env"] = kv
			}
			if sc, ok := req["startCmd"].(string); ok {
				d["startCmd"] = []string{}
				if sc != "" {
					d["startCmd"] = []string{"/bin/sh", "-c", sc}
				}
			}
		}
		writeJSON(w, 200, d)
	case r.Method == "DELETE" && strings.HasPrefix(p, "/templates/"):
		name := strings.TrimPrefix(p, "/templates/")
		if name != "base" {
			writeErr(w, 404, "template not found")
			return
		}
		if len(s.Sandboxes) > 0 {
			writeErr(w, 409, "template in use")
			return
		}
		w.WriteHeader(204)
	default:
		writeErr(w, 404, "no route "+r.Method+" "+p)
	}
}

// proc is a local process run on behalf of the data plane.
type proc struct {
	cmd   *exec.Cmd
	tag   string
	cfg   *process.ProcessConfig
	stdin io.WriteCloser
	mu    sync.Mutex
	subs  map[chan *process.ProcessEvent]chan struct{}
	ended *process.ProcessEvent
}

func (p *proc) broadcast(ev *process.ProcessEvent) {
	p.mu.Lock()
	subs := make(map[chan *process.ProcessEvent]chan struct{}, len(p.subs))
	for ch, done := range p.subs {
		subs[ch] = done
	}
	p.mu.Unlock()
	for ch, done := range subs {
		select {
		case ch <- ev:
		case <-done:
		}
	}
}

func (p *proc) subscribe() (chan *process.ProcessEvent, chan struct{}) {
	ch, done := make(chan *process.ProcessEvent, 64), make(chan struct{})
	p.mu.Lock()
	p.subs[ch] = done
	p.mu.Unlock()
	return ch, done
}

func (p *proc) unsubscribe(ch chan *process.ProcessEvent, done chan struct{}) {
	p.mu.Lock()
	delete(p.subs, ch)
	p.mu.Unlock()
	close(done)
}

type procService struct {
	processconnect.UnimplementedProcessHandler
	s *Server
}

func (ps *procService) get(sel *process.ProcessSelector) (*proc, error) {
	ps.s.Lock()
	defer ps.s.Unlock()
	for pid, p := range ps.s.procs {
		if pid == sel.GetPid() || (sel.GetTag() != "" && p.tag == sel.GetTag()) {
			return p, nil
		}
	}
	return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process not found"))
}

type sender interface {
	Send(*process.ProcessEvent) error
}

type startSender struct {
	s *connect.ServerStream[process.StartResponse]
}

func (x startSender) Send(e *process.ProcessEvent) error {
	return x.s.Send(&process.StartResponse{Event: e})
}

type connectSender struct {
	s *connect.ServerStream[process.ConnectResponse]
}

func (x connectSender) Send(e *process.ProcessEvent) error {
	return x.s.Send(&process.ConnectResponse{Event: e})
}

func follow(ctx context.Context, p *proc, pid uint32, out sender) error {
	ch, done := p.subscribe()
	defer p.unsubscribe(ch, done)
	if err := out.Send(&process.ProcessEvent{Event: &process.ProcessEvent_Start{Start: &process.ProcessEvent_StartEvent{Pid: pid}}}); err != nil {
		return err
	}
	for {
		select {
		case ev := <-ch:
			if err := out.Send(ev); err != nil {
				return err
			}
			if ev.GetEnd() != nil {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (ps *procService) Start(ctx context.Context, req *connect.Request[process.StartRequest], stream *connect.ServerStream[process.StartResponse]) error {
	cfg := req.Msg.GetProcess()
	cmd := exec.Command(cfg.GetCmd(), cfg.GetArgs()...)
	// HOME points away from the host user's own: the SDK runs commands as
	// `bash -l -c`, and a login shell would otherwise source the host's
	// profile (version managers and the like, with their own locks).
	cmd.Env = append(os.Environ(), "HOME="+os.TempDir())
	for k, v := range cfg.GetEnvs() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = cfg.GetCwd()
	// Its own process group, so that a signal reaches its children too and
	// the output pipes close, as a PTY hang-up would do in a real sandbox.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{cmd: cmd, tag: req.Msg.GetTag(), cfg: cfg, subs: map[chan *process.ProcessEvent]chan struct{}{}}
	var err error
	if req.Msg.GetStdin() || req.Msg.Pty != nil {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			return err
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	pid := uint32(cmd.Process.Pid)
	ps.s.Lock()
	ps.s.procs[pid] = p
	ps.s.Unlock()
	ch, done := p.subscribe()
	pty := req.Msg.Pty != nil
	var wg sync.WaitGroup
	read := func(r io.Reader, mk func([]byte) *process.ProcessEvent_DataEvent) {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				p.broadcast(&process.ProcessEvent{Event: &process.ProcessEvent_Data{Data: mk(append([]byte(nil), buf[:n]...))}})
			}
			if err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go read(stdout, func(b []byte) *process.ProcessEvent_DataEvent {
		if pty {
			return &process.ProcessEvent_DataEvent{Output: &process.ProcessEvent_DataEvent_Pty{Pty: b}}
		}
		return &process.ProcessEvent_DataEvent{Output: &process.ProcessEvent_DataEvent_Stdout{Stdout: b}}
	})
	go read(stderr, func(b []byte) *process.ProcessEvent_DataEvent {
		if pty {
			return &process.ProcessEvent_DataEvent{Output: &process.ProcessEvent_DataEvent_Pty{Pty: b}}
		}
		return &process.ProcessEvent_DataEvent{Output: &process.ProcessEvent_DataEvent_Stderr{Stderr: b}}
	})
	go func() {
		wg.Wait()
		_ = cmd.Wait()
		st := cmd.ProcessState
		end := &process.ProcessEvent_EndEvent{ExitCode: int32(st.ExitCode()), Exited: st.Exited(), Status: st.String()}
		ps.s.Lock()
		delete(ps.s.procs, pid)
		ps.s.Unlock()
		p.broadcast(&process.ProcessEvent{Event: &process.ProcessEvent_End{End: end}})
	}()
	// Follow with the subscription made before the process could write.
	defer p.unsubscribe(ch, done)
	out := startSender{stream}
	if err := out.Send(&process.ProcessEvent{Event: &process.ProcessEvent_Start{Start: &process.ProcessEvent_StartEvent{Pid: pid}}}); err != nil {
		return err
	}
	for {
		select {
		case ev := <-ch:
			if err := out.Send(ev); err != nil {
				return err
			}
			if ev.GetEnd() != nil {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (ps *procService) Connect(ctx context.Context, req *connect.Request[process.ConnectRequest], stream *connect.ServerStream[process.ConnectResponse]) error {
	p, err := ps.get(req.Msg.GetProcess())
	if err != nil {
		return err
	}
	return follow(ctx, p, uint32(p.cmd.Process.Pid), connectSender{stream})
}

func (ps *procService) List(context.Context, *connect.Request[process.ListRequest]) (*connect.Response[process.ListResponse], error) {
	ps.s.Lock()
	defer ps.s.Unlock()
	out := &process.ListResponse{}
	for pid, p := range ps.s.procs {
		info := &process.ProcessInfo{Config: p.cfg, Pid: pid}
		if p.tag != "" {
			info.Tag = &p.tag
		}
		out.Processes = append(out.Processes, info)
	}
	return connect.NewResponse(out), nil
}

func (ps *procService) SendInput(_ context.Context, req *connect.Request[process.SendInputRequest]) (*connect.Response[process.SendInputResponse], error) {
	p, err := ps.get(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if p.stdin == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("stdin not enabled"))
	}
	in := req.Msg.GetInput()
	data := in.GetStdin()
	if data == nil {
		data = in.GetPty()
	}
	if _, err := p.stdin.Write(data); err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&process.SendInputResponse{}), nil
}

func (ps *procService) CloseStdin(_ context.Context, req *connect.Request[process.CloseStdinRequest]) (*connect.Response[process.CloseStdinResponse], error) {
	p, err := ps.get(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	return connect.NewResponse(&process.CloseStdinResponse{}), nil
}

func (ps *procService) SendSignal(_ context.Context, req *connect.Request[process.SendSignalRequest]) (*connect.Response[process.SendSignalResponse], error) {
	p, err := ps.get(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.Signal(req.Msg.GetSignal()))
	return connect.NewResponse(&process.SendSignalResponse{}), nil
}

func (ps *procService) Update(_ context.Context, req *connect.Request[process.UpdateRequest]) (*connect.Response[process.UpdateResponse], error) {
	if _, err := ps.get(req.Msg.GetProcess()); err != nil {
		return nil, err
	}
	ps.s.Lock()
	ps.s.Resizes = append(ps.s.Resizes, [2]uint32{req.Msg.GetPty().GetSize().GetCols(), req.Msg.GetPty().GetSize().GetRows()})
	ps.s.Unlock()
	return connect.NewResponse(&process.UpdateResponse{}), nil
}
