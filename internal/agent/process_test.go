package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	pb "github.com/sbxdev/sbx/gen/process"
)

func TestRun(t *testing.T) {
	withEnv := sh(`echo "$FROM_CONFIG $OVERRIDDEN $FROM_REQUEST $E2B_SANDBOX $E2B_SANDBOX_ID $E2B_TEMPLATE_ID $HOME $USER $PATH"`)
	withEnv.Process.Envs = map[string]string{"OVERRIDDEN": "req", "FROM_REQUEST": "req"}
	withCwd := cmd("pwd")
	withCwd.Process.Cwd = ptr(os.TempDir())

	tests := []struct {
		name       string
		req        *pb.StartRequest
		user       string
		wantStdout string
		wantStderr string
		wantCode   int32
	}{
		{name: "echo", req: cmd("echo", "hello", "world"), wantStdout: "hello world\n"},
		{name: "exit code", req: sh("exit 3"), wantCode: 3},
		{name: "stderr", req: sh("echo oops >&2; exit 1"), wantStderr: "oops\n", wantCode: 1},
		{name: "env", req: withEnv, wantStdout: "cfg req req true sbx-test tpl-test /root root " + defaultPath + "\n"},
		{name: "cwd", req: withCwd, wantStdout: os.TempDir() + "\n"},
		{name: "default cwd is home", req: cmd("pwd"), wantStdout: "/root\n"},
		{name: "root", req: cmd("id", "-u"), user: "root", wantStdout: "0\n"},
		{name: "nobody", req: sh("id -u; id -g; pwd; echo $USER"), user: "nobody", wantStdout: "65534\n65534\n/\nnobody\n"},
		{name: "stdin is /dev/null", req: cmd("cat"), wantStdout: ""},
	}
	for _, proto := range protocols {
		c := client(t, proto)
		for _, tt := range tests {
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				var header []string
				if tt.user != "" {
					header = basicUser(tt.user)
				}
				r := run(t, c, tt.req, header...)
				if got := r.stdout.String(); got != tt.wantStdout {
					t.Errorf("stdout %q, want %q", got, tt.wantStdout)
				}
				if got := r.stderr.String(); got != tt.wantStderr {
					t.Errorf("stderr %q, want %q", got, tt.wantStderr)
				}
				if r.end.GetExitCode() != tt.wantCode || !r.end.GetExited() {
					t.Errorf("end %v, want exit code %d", r.end, tt.wantCode)
				}
				wantStatus := "exit status " + strconv.Itoa(int(tt.wantCode))
				if r.end.GetStatus() != wantStatus {
					t.Errorf("status %q, want %q", r.end.GetStatus(), wantStatus)
				}
				if tt.wantCode != 0 && r.end.GetError() != wantStatus {
					t.Errorf("error %q, want %q", r.end.GetError(), wantStatus)
				}
				if tt.wantCode == 0 && r.end.Error != nil {
					t.Errorf("error %q on success", r.end.GetError())
				}
				if r.pid == 0 {
					t.Error("start event without pid")
				}
			})
		}
	}
}

func basicUser(name string) []string {
	return []string{"Authorization", "Basic " + base64(name+":")}
}

func base64(s string) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var b strings.Builder
	in := []byte(s)
	for len(in) > 0 {
		var n [3]byte
		k := copy(n[:], in)
		in = in[k:]
		v := uint(n[0])<<16 | uint(n[1])<<8 | uint(n[2])
		for i := 0; i < 4; i++ {
			if i > k {
				b.WriteByte('=')
				continue
			}
			b.WriteByte(chars[(v>>(18-6*i))&63])
		}
	}
	return b.String()
}

func TestStartErrors(t *testing.T) {
	badCwd := cmd("pwd")
	badCwd.Process.Cwd = ptr("/does/not/exist")
	fileCwd := cmd("pwd")
	fileCwd.Process.Cwd = ptr("/etc/passwd")
	tests := []struct {
		name   string
		req    *pb.StartRequest
		header []string
		want   connect.Code
	}{
		{"not in PATH", cmd("no-such-command-sbx"), nil, connect.CodeNotFound},
		{"no such path", cmd("/no/such/binary"), nil, connect.CodeNotFound},
		{"not executable", cmd("/etc/passwd"), nil, connect.CodePermissionDenied},
		{"unknown user", cmd("true"), basicUser("no-such-user-sbx"), connect.CodeInvalidArgument},
		{"missing cwd", badCwd, nil, connect.CodeInvalidArgument},
		{"cwd is a file", fileCwd, nil, connect.CodeInvalidArgument},
		{"no cmd", &pb.StartRequest{}, nil, connect.CodeInvalidArgument},
	}
	for _, proto := range protocols {
		c := client(t, proto)
		for _, tt := range tests {
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				err := startErr(t, c, tt.req, tt.header...)
				wantCode(t, err, tt.want)
				if msg := connect.CodeOf(err); msg == connect.CodeNotFound && !strings.Contains(err.Error(), "not found") {
					t.Errorf("message %q does not say what was not found", err)
				}
			})
		}
	}
}

// TestBackgroundConnect starts a tagged cat with stdin, leaves its stream,
// follows it from a second client, lists it, feeds it and closes its stdin.
func TestBackgroundConnect(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ctx := testContext(t)
			c1, c2 := client(t, proto), client(t, "h2c")
			tag := "bg-" + proto
			req := cmd("cat")
			req.Tag, req.Stdin = ptr(tag), ptr(true)

			// The first client starts the process and goes away.
			startCtx, leave := context.WithCancel(ctx)
			s1, err := c1.Start(startCtx, connect.NewRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := nextEvent(s1)
			if err != nil {
				t.Fatal(err)
			}
			pid := ev.GetStart().GetPid()
			leave()
			s1.Close()

			// A duplicate tag is refused while it runs.
			wantCode(t, startErr(t, c2, req), connect.CodeAlreadyExists)

			list, err := c2.List(ctx, connect.NewRequest(&pb.ListRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			var found *pb.ProcessInfo
			for _, p := range list.Msg.GetProcesses() {
				if p.GetPid() == pid {
					found = p
				}
			}
			if found == nil || found.GetTag() != tag || found.GetConfig().GetCmd() != "cat" {
				t.Fatalf("list %v: want pid %d tagged %q", list.Msg, pid, tag)
			}

			s2, err := c2.Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: byTag(tag)}))
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			ev, err = nextEvent(s2)
			if err != nil || ev.GetStart().GetPid() != pid {
				t.Fatalf("connect start event %v, %v; want pid %d", ev, err, pid)
			}
			for _, in := range []string{"one\n", "two\n"} {
				if _, err := c1.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{
					Process: byPID(pid),
					Input:   &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte(in)}},
				})); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c1.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: byTag(tag)})); err != nil {
				t.Fatal(err)
			}
			r := &result{}
			for r.end == nil {
				ev, err := nextEvent(s2)
				if err != nil {
					t.Fatalf("connect stream: %v", err)
				}
				r.add(t, ev)
			}
			if r.stdout.String() != "one\ntwo\n" || r.end.GetExitCode() != 0 {
				t.Fatalf("stdout %q end %v", r.stdout.String(), r.end)
			}

			// Gone once ended.
			_, err = c1.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: byPID(pid),
				Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("x")}}}))
			wantCode(t, err, connect.CodeNotFound)
		})
	}
}

func TestSelectorErrors(t *testing.T) {
	ctx := testContext(t)
	c := client(t, "h2c")
	s, err := c.Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: byTag("no-such-tag")}))
	if err == nil {
		_, err = nextEvent(s)
	}
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: byPID(1 << 30), Signal: pb.Signal_SIGNAL_SIGKILL}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.Update(ctx, connect.NewRequest(&pb.UpdateRequest{Process: &pb.ProcessSelector{}}))
	wantCode(t, err, connect.CodeInvalidArgument)
}

func TestStdinNotEnabled(t *testing.T) {
	ctx := testContext(t)
	c := client(t, "h2c")
	req := sh("read x") // stdin is /dev/null: read fails at once
	req.Stdin = ptr(false)
	r := run(t, c, req)
	if r.end.GetExitCode() == 0 {
		t.Fatalf("read from /dev/null succeeded: %v", r.end)
	}
	// A process without stdin refuses input.
	s, err := start(t, c, cmd("sleep", "1000"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := nextEvent(s)
	if err != nil {
		t.Fatal(err)
	}
	pid := ev.GetStart().GetPid()
	_, err = c.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: byPID(pid),
		Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("x")}}}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	if _, err := c.SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: byPID(pid), Signal: pb.Signal_SIGNAL_SIGTERM})); err != nil {
		t.Fatal(err)
	}
	r = collect2(t, s)
	if r.end.GetStatus() != "signal: terminated" || r.end.GetExitCode() != -1 || r.end.GetExited() {
		t.Fatalf("end %v, want signal: terminated", r.end)
	}
}

// collect2 reads the rest of a stream whose start event was already read.
func collect2[T any, PT eventMsg[T]](t testing.TB, s *connect.ServerStreamForClient[T]) *result {
	t.Helper()
	r, err := readRest[T, PT](t, s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// readRest is collect2 for goroutines other than the test's.
func readRest[T any, PT eventMsg[T]](t testing.TB, s *connect.ServerStreamForClient[T]) (*result, error) {
	r := &result{}
	for r.end == nil {
		ev, err := nextEvent[T, PT](s)
		if err != nil {
			return r, fmt.Errorf("stream: %w", err)
		}
		if ev.GetStart() != nil || (ev.GetEnd() != nil && r.end != nil) {
			return r, fmt.Errorf("unexpected event %v", ev)
		}
		if e := ev.GetEnd(); e != nil {
			r.end = e
			continue
		}
		r.add(t, ev)
	}
	return r, nil
}

func TestStreamInput(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ctx := testContext(t)
			c := client(t, proto)
			req := cmd("cat")
			req.Stdin = ptr(true)
			s, err := start(t, c, req)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := nextEvent(s)
			if err != nil {
				t.Fatal(err)
			}
			pid := ev.GetStart().GetPid()

			in := c.StreamInput(ctx)
			msgs := []*pb.StreamInputRequest{
				{Event: &pb.StreamInputRequest_Start{Start: &pb.StreamInputRequest_StartEvent{Process: byPID(pid)}}},
				{Event: &pb.StreamInputRequest_Data{Data: &pb.StreamInputRequest_DataEvent{Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("abc")}}}}},
				{Event: &pb.StreamInputRequest_Keepalive{Keepalive: &pb.StreamInputRequest_KeepAlive{}}},
				{Event: &pb.StreamInputRequest_Data{Data: &pb.StreamInputRequest_DataEvent{Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("def")}}}}},
			}
			for _, m := range msgs {
				if err := in.Send(m); err != nil {
					t.Fatalf("send: %v", err)
				}
			}
			if _, err := in.CloseAndReceive(); err != nil {
				t.Fatalf("stream input: %v", err)
			}
			if _, err := c.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: byPID(pid)})); err != nil {
				t.Fatal(err)
			}
			r := collect2(t, s)
			if r.stdout.String() != "abcdef" {
				t.Fatalf("stdout %q", r.stdout.String())
			}
		})
	}
}

// TestSignalGroup kills a shell and the sleep it started: the signal goes to
// the whole process group.
func TestSignalGroup(t *testing.T) {
	ctx := testContext(t)
	c := client(t, "h2c")
	s, err := start(t, c, sh("sleep 1000 & echo $!; wait"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := nextEvent(s)
	if err != nil {
		t.Fatal(err)
	}
	pid := ev.GetStart().GetPid()
	var out bytes.Buffer
	for !bytes.Contains(out.Bytes(), []byte("\n")) {
		ev, err := nextEvent(s)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(ev.GetData().GetStdout())
	}
	child, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("child pid %q: %v", out.String(), err)
	}
	if _, err := c.SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: byPID(pid), Signal: pb.Signal_SIGNAL_SIGKILL})); err != nil {
		t.Fatal(err)
	}
	r := collect2(t, s)
	if r.end.GetStatus() != "signal: killed" || r.end.GetExitCode() != -1 {
		t.Fatalf("end %v, want signal: killed", r.end)
	}
	// The sleep died too, and, orphaned, was reaped by the agent.
	if err := testAgent.orphans.wait(ctx, child); err != nil {
		t.Fatal(err)
	}
	if pidExists(child) {
		t.Fatalf("child %d still exists", child)
	}
}

// TestOrphanReaped leaves a grandchild behind; when it dies the agent reaps
// it, and the parent's end event is not held up by the output it holds open.
func TestOrphanReaped(t *testing.T) {
	withPTY := sh("trap '' HUP; sleep 1000 & echo $!") // ignores the hangup when the shell leaves
	withPTY.Pty = &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}}
	for name, req := range map[string]*pb.StartRequest{
		"pipes": sh("sleep 1000 & echo $!"),
		"pty":   withPTY,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			c := client(t, "http1")
			r := run(t, c, req)
			out := r.stdout.String() + r.pty.String()
			orphan, err := strconv.Atoi(strings.TrimSpace(out))
			if err != nil {
				t.Fatalf("orphan pid %q: %v", out, err)
			}
			if !pidExists(orphan) {
				t.Fatalf("orphan %d is not running", orphan)
			}
			if err := unix.Kill(orphan, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := testAgent.orphans.wait(ctx, orphan); err != nil {
				t.Fatal(err)
			}
			if pidExists(orphan) {
				t.Fatalf("orphan %d left as a zombie", orphan)
			}
		})
	}
}

func TestKeepalive(t *testing.T) {
	c := client(t, "h2c")
	req := sh("read x")
	req.Stdin = ptr(true)
	s, err := start(t, c, req, KeepalivePingHeader, "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nextEvent(s); err != nil {
		t.Fatal(err)
	}
	ev, err := nextEvent(s) // nothing else happens: a keepalive after a second
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetKeepalive() == nil {
		t.Fatalf("got %v, want a keepalive", ev)
	}
}

// TestSubscribers follows one process from two streams while a third stalls
// and then leaves: the two get all the output, in order.
func TestSubscribers(t *testing.T) {
	const size = 1 << 20
	ctx := testContext(t)
	c := client(t, "h2c")
	req := sh("read x; head -c " + strconv.Itoa(size) + " /dev/urandom | od -An -tx1 -v")
	req.Stdin = ptr(true)
	s0, err := start(t, c, req)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := nextEvent(s0)
	if err != nil {
		t.Fatal(err)
	}
	pid := ev.GetStart().GetPid()
	// The starting stream is a subscriber too, and must keep reading.
	type res struct {
		r   *result
		err error
	}
	r0c := make(chan res, 1)
	go func() {
		r, err := readRest(t, s0)
		r0c <- res{r, err}
	}()

	connectTo := func(ctx context.Context) *connect.ServerStreamForClient[pb.ConnectResponse] {
		s, err := client(t, "h2c").Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: byPID(pid)}))
		if err != nil {
			t.Fatal(err)
		}
		if ev, err := nextEvent(s); err != nil || ev.GetStart() == nil {
			t.Fatalf("connect: %v %v", ev, err)
		}
		return s
	}
	s1 := connectTo(ctx)
	stallCtx, leave := context.WithCancel(ctx)
	stalled := connectTo(stallCtx)
	_ = stalled

	if _, err := c.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: byPID(pid),
		Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("go\n")}}})); err != nil {
		t.Fatal(err)
	}
	// Once output flows, the stalled subscriber leaves.
	r1 := &result{}
	for r1.stdout.Len() == 0 {
		ev, err := nextEvent(s1)
		if err != nil {
			t.Fatal(err)
		}
		r1.add(t, ev)
	}
	leave()
	for r1.end == nil {
		ev, err := nextEvent(s1)
		if err != nil {
			t.Fatal(err)
		}
		r1.add(t, ev)
	}
	got0 := <-r0c
	if got0.err != nil {
		t.Fatal(got0.err)
	}
	r0 := got0.r
	if r0.stdout.String() != r1.stdout.String() {
		t.Fatalf("subscribers saw different output: %d and %d bytes", r0.stdout.Len(), r1.stdout.Len())
	}
	if n := len(strings.Fields(r1.stdout.String())); n != size {
		t.Fatalf("got %d bytes of output, want %d", n, size)
	}
}

func TestPTY(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ctx := testContext(t)
			c := client(t, proto)
			req := cmd("/bin/sh")
			req.Pty = &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}}
			s, err := start(t, c, req)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := nextEvent(s)
			if err != nil {
				t.Fatal(err)
			}
			pid := ev.GetStart().GetPid()
			var out bytes.Buffer
			input := func(line string) {
				if _, err := c.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: byPID(pid),
					Input: &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: []byte(line)}}})); err != nil {
					t.Fatal(err)
				}
			}
			await := func(want string) {
				t.Helper()
				for !bytes.Contains(out.Bytes(), []byte(want)) {
					ev, err := nextEvent(s)
					if err != nil {
						t.Fatalf("waiting for %q in %q: %v", want, out.String(), err)
					}
					if ev.GetData().GetStdout() != nil || ev.GetData().GetStderr() != nil {
						t.Fatalf("pipe output from a PTY process: %v", ev)
					}
					out.Write(ev.GetData().GetPty())
				}
			}
			input("tty; echo TERM=$TERM\n")
			await("TERM=xterm-256color")
			if !bytes.Contains(out.Bytes(), []byte("/dev/pts/")) {
				t.Fatalf("tty printed no /dev/pts path: %q", out.String())
			}
			if _, err := c.Update(ctx, connect.NewRequest(&pb.UpdateRequest{Process: byPID(pid),
				Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 123, Rows: 45}}})); err != nil {
				t.Fatal(err)
			}
			input("stty size\n")
			await("45 123")
			// CloseStdin makes no sense on a terminal.
			_, err = c.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: byPID(pid)}))
			wantCode(t, err, connect.CodeFailedPrecondition)
			input("exit 7\n")
			r := collect2(t, s)
			if r.end.GetExitCode() != 7 {
				t.Fatalf("end %v, want exit 7", r.end)
			}
		})
	}
}

func TestUpdateWithoutPTY(t *testing.T) {
	ctx := testContext(t)
	c := client(t, "h2c")
	req := cmd("cat")
	req.Stdin = ptr(true)
	s, err := start(t, c, req)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := nextEvent(s)
	if err != nil {
		t.Fatal(err)
	}
	pid := ev.GetStart().GetPid()
	_, err = c.Update(ctx, connect.NewRequest(&pb.UpdateRequest{Process: byPID(pid), Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 1, Rows: 1}}}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	if _, err := c.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: byPID(pid)})); err != nil {
		t.Fatal(err)
	}
	if r := collect2(t, s); r.end.GetExitCode() != 0 {
		t.Fatalf("end %v", r.end)
	}
}
