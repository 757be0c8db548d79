package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// Terminals
//
// A terminal is a shell the agent runs on a PTY, its output read by the
// server (not by the page) into a ring of the last termReplay bytes, and
// at most one WebSocket attached to it at a time. When the WebSocket
// drops, the shell stays for termKeep: a reconnect naming its session id
// re-attaches, first sent the ring so the screen can be redrawn. A shell
// nobody re-attaches to is killed. Input goes to the agent as it comes,
// one SendInput per frame, in order.

const (
	// termKeep is how long a terminal outlives its last WebSocket.
	termKeep = 5 * time.Minute
	// termReplay is how much recent output a re-attach is sent.
	termReplay = 64 << 10
	// termQueue is how many output chunks an attached WebSocket may fall
	// behind by before it is dropped (the reconnect replays).
	termQueue = 1024
	// maxTermSize bounds the columns and rows a client may ask for.
	maxTermSize = 1000
	// termReadLimit bounds one frame from the client (a paste).
	termReadLimit = 1 << 20
	// termWriteTimeout bounds one write to the client.
	termWriteTimeout = 30 * time.Second
)

// shellCommand starts the user's login shell: bash where the template has
// it, else sh.
const shellCommand = `if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l`

// terminals are the open terminals, by session id.
type terminals struct {
	ag  *agents
	log *slog.Logger

	mu sync.Mutex
	m  map[string]*term
}

func newTerminals(ag *agents, log *slog.Logger) *terminals {
	return &terminals{ag: ag, log: log, m: map[string]*term{}}
}

// term is one terminal.
type term struct {
	id  string
	pid uint32
	b   *box
	ts  *terminals
	// stop ends the agent's output stream.
	stop context.CancelFunc

	mu     sync.Mutex
	ring   []byte
	att    *attachment
	reap   *time.Timer
	exited bool
}

// attachment is a WebSocket's view of a terminal.
type attachment struct {
	out  chan []byte
	exit chan int32 // the shell's exit code, once
	// kicked is closed when another WebSocket took the terminal, or this
	// one fell too far behind.
	kicked chan struct{}
	once   sync.Once
}

func (a *attachment) kick() { a.once.Do(func() { close(a.kicked) }) }

func newSessionID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// start starts a shell of cols×rows in b's sandbox.
func (ts *terminals) start(ctx context.Context, b *box, cols, rows uint32) (*term, error) {
	id := newSessionID()
	tag := "dashboard-terminal-" + id
	cwd := "~"
	stdin := true
	req := &pb.StartRequest{
		Process: &pb.ProcessConfig{
			Cmd: "/bin/sh", Args: []string{"-c", shellCommand},
			Envs: map[string]string{"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
			Cwd:  &cwd,
		},
		Pty:   &pb.PTY{Size: &pb.PTY_Size{Cols: cols, Rows: rows}},
		Tag:   &tag,
		Stdin: &stdin,
	}
	// The shell outlives the request that started it.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	unwatch := context.AfterFunc(ctx, stop)
	stream, err := b.process().Start(sctx, request(b, req))
	if err != nil {
		unwatch()
		stop()
		return nil, agentError(err, "start the shell")
	}
	var pid uint32
	for pid == 0 {
		if !stream.Receive() {
			unwatch()
			stop()
			if err := stream.Err(); err != nil {
				return nil, agentError(err, "start the shell")
			}
			return nil, errors.New("start the shell: the agent's stream ended before the shell started")
		}
		switch e := stream.Msg().GetEvent().GetEvent().(type) {
		case *pb.ProcessEvent_Start:
			pid = e.Start.GetPid()
		case *pb.ProcessEvent_End:
			unwatch()
			stop()
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, "the shell ended at once: %s", e.End.GetStatus())
		}
	}
	if !unwatch() {
		// The request ended while the shell started.
		stop()
		return nil, ctx.Err()
	}
	t := &term{id: id, pid: pid, b: b, ts: ts, stop: stop}
	ts.mu.Lock()
	ts.m[id] = t
	ts.mu.Unlock()
	go t.pump(stream)
	return t, nil
}

// get returns the terminal of session id in sandbox sandboxID, or nil.
func (ts *terminals) get(id, sandboxID string) *term {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.m[id]
	if t == nil || t.b.sb.ID != sandboxID {
		return nil
	}
	return t
}

func (ts *terminals) remove(t *term) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m[t.id] == t {
		delete(ts.m, t.id)
	}
}

// closeAll kills every terminal's shell (the server is stopping).
func (ts *terminals) closeAll() {
	ts.mu.Lock()
	all := make([]*term, 0, len(ts.m))
	for _, t := range ts.m {
		all = append(all, t)
	}
	ts.mu.Unlock()
	var wg sync.WaitGroup
	for _, t := range all {
		wg.Go(t.kill)
	}
	wg.Wait()
}

// pump reads the shell's output until it ends.
func (t *term) pump(stream *connect.ServerStreamForClient[pb.StartResponse]) {
	defer stream.Close()
	code := int32(-1)
	for stream.Receive() {
		switch e := stream.Msg().GetEvent().GetEvent().(type) {
		case *pb.ProcessEvent_Data:
			d := e.Data
			out := d.GetPty()
			if out == nil {
				out = append(d.GetStdout(), d.GetStderr()...)
			}
			if len(out) > 0 {
				t.output(out)
			}
		case *pb.ProcessEvent_End:
			code = e.End.GetExitCode()
		}
	}
	t.ended(code)
}

// output keeps p in the ring and sends it to the attached WebSocket.
func (t *term) output(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ring = append(t.ring, p...)
	if len(t.ring) > 2*termReplay {
		// Compacted only now and then: the replay is the last
		// termReplay bytes whatever the ring holds.
		t.ring = append(t.ring[:0:0], t.ring[len(t.ring)-termReplay:]...)
	}
	if a := t.att; a != nil {
		select {
		case a.out <- bytes.Clone(p):
		default:
			// Too slow a client: dropped, it re-attaches from the ring.
			a.kick()
			t.att = nil
			t.reapLater()
		}
	}
}

// ended records the shell's end and tells the attached WebSocket.
func (t *term) ended(code int32) {
	t.mu.Lock()
	t.exited = true
	if t.reap != nil {
		t.reap.Stop()
	}
	if a := t.att; a != nil {
		a.exit <- code
	}
	t.mu.Unlock()
	t.ts.remove(t)
	t.stop()
}

// attach makes a the terminal's WebSocket, kicking any other, and returns
// the output to replay.
func (t *term) attach() (*attachment, []byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.exited {
		return nil, nil, errdefs.New(errdefs.ErrNotFound, "terminal session %q has ended", t.id)
	}
	if t.att != nil {
		t.att.kick()
	}
	if t.reap != nil {
		t.reap.Stop()
		t.reap = nil
	}
	a := &attachment{out: make(chan []byte, termQueue), exit: make(chan int32, 1), kicked: make(chan struct{})}
	t.att = a
	replay := t.ring
	if len(replay) > termReplay {
		replay = replay[len(replay)-termReplay:]
	}
	return a, bytes.Clone(replay), nil
}

// detach lets a go; the shell is killed if nobody attaches within
// termKeep.
func (t *term) detach(a *attachment) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.att == a {
		t.att = nil
		t.reapLater()
	}
}

// reapLater arms the kill of a terminal nobody is attached to. t.mu is
// held.
func (t *term) reapLater() {
	if t.exited {
		return
	}
	if t.reap != nil {
		t.reap.Stop()
	}
	t.reap = time.AfterFunc(termKeep, t.kill)
}

// kill ends the shell and forgets the terminal.
func (t *term) kill() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := t.b.process().SendSignal(ctx, request(t.b, &pb.SendSignalRequest{Process: t.selector(), Signal: pb.Signal_SIGNAL_SIGKILL}))
	if err != nil {
		t.ts.log.Debug("kill terminal shell", "sandbox_id", t.b.sb.ID, "pid", t.pid, "err", err)
	}
	t.ts.remove(t)
	t.stop()
}

func (t *term) selector() *pb.ProcessSelector {
	return &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: t.pid}}
}

func (t *term) input(ctx context.Context, p []byte) error {
	_, err := t.b.process().SendInput(ctx, request(t.b, &pb.SendInputRequest{Process: t.selector(), Input: &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: p}}}))
	return err
}

func (t *term) resize(ctx context.Context, cols, rows uint32) error {
	_, err := t.b.process().Update(ctx, request(t.b, &pb.UpdateRequest{Process: t.selector(), Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: cols, Rows: rows}}}))
	return err
}

// termSize parses a column or row count; empty is def.
func termSize(name, v string, def uint32) (uint32, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n < 1 || n > maxTermSize {
		return 0, errdefs.New(errdefs.ErrInvalidArgument, "%s must be a number from 1 to %d", name, maxTermSize)
	}
	return uint32(n), nil
}

// control is a text frame of the terminal protocol.
type control struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	Cols uint32 `json:"cols,omitempty"`
	Rows uint32 `json:"rows,omitempty"`
	Code *int32 `json:"code,omitempty"`
}

// terminal serves GET /dashboard/api/sandboxes/{id}/terminal: a WebSocket
// to a new shell, or to the one of session S when the query names it.
func (s *Server) terminal(w http.ResponseWriter, r *http.Request, id string) error {
	ctx := r.Context()
	q := r.URL.Query()
	cols, err := termSize("cols", q.Get("cols"), 80)
	if err != nil {
		return err
	}
	rows, err := termSize("rows", q.Get("rows"), 24)
	if err != nil {
		return err
	}
	b, err := s.agents.running(ctx, id)
	if err != nil {
		return err
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return errdefs.New(errdefs.ErrInvalidArgument, "this route is a WebSocket: send Upgrade: websocket")
	}
	// Threat: cross-site WebSocket hijacking. A handshake is a GET the
	// browser sends with the cookie from any page, and no CSRF token
	// rides on it; a page elsewhere would get a shell. Browsers always
	// send Origin on a WebSocket: it must be present and name this host
	// (the API refused other hosts already).
	o := r.Header.Get("Origin")
	if u, err := url.Parse(o); o == "" || err != nil || !strings.EqualFold(u.Host, r.Host) {
		return errdefs.New(errdefs.ErrPermissionDenied, "a terminal needs the Origin of this server")
	}
	var t *term
	if sid := q.Get("session"); sid != "" {
		if t = s.terms.get(sid, b.sb.ID); t == nil {
			return errdefs.New(errdefs.ErrNotFound, "terminal session %q not found: it ended, or was left for over %v", sid, termKeep)
		}
	} else if t, err = s.terms.start(ctx, b, cols, rows); err != nil {
		return err
	}
	a, replay, err := t.attach()
	if err != nil {
		return err
	}
	defer t.detach(a)
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept answered
	}
	defer conn.CloseNow()
	conn.SetReadLimit(termReadLimit)
	// The connection's own calls run under life, not ctx: a cancelled
	// context makes the library drop the connection without a close
	// frame, and a revoked session's terminal is told why it closes.
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	defer end()
	write := func(typ websocket.MessageType, p []byte) error {
		wctx, cancel := context.WithTimeout(life, termWriteTimeout)
		defer cancel()
		return conn.Write(wctx, typ, p)
	}
	if q.Get("session") != "" {
		t.resize(life, cols, rows)
	}
	hello, _ := json.Marshal(control{Type: "session", ID: t.id})
	if write(websocket.MessageText, hello) != nil {
		return nil
	}
	if len(replay) > 0 && write(websocket.MessageBinary, replay) != nil {
		return nil
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			typ, data, err := conn.Read(life)
			if err != nil {
				return
			}
			switch typ {
			case websocket.MessageBinary:
				if len(data) > 0 {
					if err := t.input(life, data); err != nil && life.Err() == nil {
						s.log.Debug("terminal input", "sandbox_id", id, "err", err)
					}
				}
			case websocket.MessageText:
				var c control
				if json.Unmarshal(data, &c) != nil || c.Type != "resize" || c.Cols < 1 || c.Rows < 1 || c.Cols > maxTermSize || c.Rows > maxTermSize {
					conn.Close(websocket.StatusUnsupportedData, "unknown control message")
					return
				}
				if err := t.resize(life, c.Cols, c.Rows); err != nil && life.Err() == nil {
					s.log.Debug("terminal resize", "sandbox_id", id, "err", err)
				}
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			// The session was revoked (or the server stops).
			conn.Close(websocket.StatusPolicyViolation, "the session has ended")
			return nil
		case <-readerDone:
			return nil // the client went away
		case p := <-a.out:
			if write(websocket.MessageBinary, p) != nil {
				return nil
			}
		case code := <-a.exit:
			// What the shell wrote last may still be queued.
			for len(a.out) > 0 {
				if write(websocket.MessageBinary, <-a.out) != nil {
					return nil
				}
			}
			msg, _ := json.Marshal(control{Type: "exit", Code: &code})
			write(websocket.MessageText, msg)
			conn.Close(websocket.StatusNormalClosure, "the shell has ended")
			return nil
		case <-a.kicked:
			conn.Close(websocket.StatusTryAgainLater, "the terminal was attached elsewhere, or this connection fell behind")
			return nil
		}
	}
}
