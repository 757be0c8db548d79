package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/gen/process/processconnect"
	"github.com/sbxdev/sbx/internal/agentapi"
)

const testToken = "test-token-0123456789"

// testAgent is the one agent every test in the package drives: the reaper
// waits for every child of the test binary, so there must be only one.
var testAgent struct {
	a    *Agent
	sock string
	// orphans receives the pid of each orphan the reaper collects.
	orphans *orphanLog
}

// orphanLog records the orphans the reaper collected.
type orphanLog struct {
	mu      sync.Mutex
	reaped  map[int]bool
	changed chan struct{}
}

func (o *orphanLog) add(pid int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reaped[pid] = true
	close(o.changed)
	o.changed = make(chan struct{})
}

// wait blocks until the reaper has collected pid as an orphan.
func (o *orphanLog) wait(ctx context.Context, pid int) error {
	for {
		o.mu.Lock()
		done, ch := o.reaped[pid], o.changed
		o.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("orphan %d not reaped: %w", pid, ctx.Err())
		}
	}
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: internal/agent tests must run as root (they switch users, start PTYs and reap children)")
		os.Exit(1)
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sbx-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	level := slog.LevelWarn
	if os.Getenv("SBX_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	a, err := New(agentapi.Config{
		AccessToken: testToken,
		DefaultUser: "root",
		SandboxID:   "sbx-test",
		TemplateID:  "tpl-test",
		EnvVars:     map[string]string{"FROM_CONFIG": "cfg", "OVERRIDDEN": "cfg"},
	}, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	orphans := &orphanLog{reaped: map[int]bool{}, changed: make(chan struct{})}
	a.reaper.mu.Lock()
	a.reaper.orphaned = orphans.add
	a.reaper.mu.Unlock()

	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	testAgent.a, testAgent.sock, testAgent.orphans = a, sock, orphans

	code := m.Run()
	cancel()
	if err := <-served; err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		code = 1
	}
	a.Close()
	return code
}

// tokenTransport adds the access token to every request.
type tokenTransport struct {
	token string
	next  http.RoundTripper
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set(agentapi.AccessTokenHeader, t.token)
	}
	return t.next.RoundTrip(r)
}

// protocols are the two ways clients reach the agent.
var protocols = []string{"http1", "h2c"}

func httpClient(t testing.TB, proto, token string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", testAgent.sock)
		},
	}
	if proto == "h2c" {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tokenTransport{token: token, next: tr}}
}

func client(t testing.TB, proto string) processconnect.ProcessClient {
	return processconnect.NewProcessClient(httpClient(t, proto, testToken), "http://agent")
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// result is what a process stream carried.
type result struct {
	pid        uint32
	stdout     strings.Builder
	stderr     strings.Builder
	pty        strings.Builder
	keepalives int
	end        *pb.ProcessEvent_EndEvent
}

// eventMsg is a StartResponse or a ConnectResponse.
type eventMsg[T any] interface {
	*T
	GetEvent() *pb.ProcessEvent
}

func nextEvent[T any, PT eventMsg[T]](s *connect.ServerStreamForClient[T]) (*pb.ProcessEvent, error) {
	if !s.Receive() {
		if err := s.Err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	return PT(s.Msg()).GetEvent(), nil
}

// collect reads a stream to its end. The first event must be the start.
func collect[T any, PT eventMsg[T]](t testing.TB, s *connect.ServerStreamForClient[T]) *result {
	t.Helper()
	r := &result{}
	ev, err := nextEvent[T, PT](s)
	if err != nil {
		t.Fatalf("first event: %v", err)
	}
	if ev.GetStart() == nil {
		t.Fatalf("first event is %v, want start", ev)
	}
	r.pid = ev.GetStart().GetPid()
	for {
		ev, err := nextEvent[T, PT](s)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("stream: %v (so far stdout %q stderr %q)", err, r.stdout.String(), r.stderr.String())
		}
		r.add(t, ev)
	}
	if r.end == nil {
		t.Fatalf("stream ended without an end event (stdout %q)", r.stdout.String())
	}
	return r
}

func (r *result) add(t testing.TB, ev *pb.ProcessEvent) {
	switch e := ev.GetEvent().(type) {
	case *pb.ProcessEvent_Data:
		r.stdout.Write(e.Data.GetStdout())
		r.stderr.Write(e.Data.GetStderr())
		r.pty.Write(e.Data.GetPty())
	case *pb.ProcessEvent_End:
		if r.end != nil {
			t.Fatalf("second end event")
		}
		r.end = e.End
	case *pb.ProcessEvent_Keepalive:
		r.keepalives++
	case *pb.ProcessEvent_Start:
		t.Fatalf("second start event")
	}
}

// run starts a process and reads its stream to the end.
func run(t testing.TB, c processconnect.ProcessClient, req *pb.StartRequest, header ...string) *result {
	t.Helper()
	s, err := start(t, c, req, header...)
	if err != nil {
		t.Fatalf("start %s: %v", req.GetProcess().GetCmd(), err)
	}
	return collect(t, s)
}

func start(t testing.TB, c processconnect.ProcessClient, req *pb.StartRequest, header ...string) (*connect.ServerStreamForClient[pb.StartResponse], error) {
	t.Helper()
	r := connect.NewRequest(req)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header().Set(header[i], header[i+1])
	}
	s, err := c.Start(testContext(t), r)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { s.Close() })
	return s, nil
}

// startErr starts a process and returns the error the stream reports
// before any event.
func startErr(t testing.TB, c processconnect.ProcessClient, req *pb.StartRequest, header ...string) error {
	t.Helper()
	s, err := start(t, c, req, header...)
	if err != nil {
		return err
	}
	ev, err := nextEvent(s)
	if err == nil {
		t.Fatalf("start %s: got event %v, want an error", req.GetProcess().GetCmd(), ev)
	}
	return err
}

func cmd(name string, args ...string) *pb.StartRequest {
	return &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: name, Args: args}}
}

func sh(script string) *pb.StartRequest { return cmd("/bin/sh", "-c", script) }

func ptr[T any](v T) *T { return &v }

func byPID(pid uint32) *pb.ProcessSelector {
	return &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
}

func byTag(tag string) *pb.ProcessSelector {
	return &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: tag}}
}

func wantCode(t testing.TB, err error, code connect.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("got %v (%v), want %v", got, err, code)
	}
}

// pidExists reports whether pid is still in the process table (a zombie
// counts: it has not been reaped).
func pidExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || err == unix.EPERM
}
