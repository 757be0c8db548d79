package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/gen/process/processconnect"
	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/tunnel"
)

// StartTag is the tag of a template's start command in every sandbox made
// from it: clients reattach to its output with commands.connect("start")
// (Go SDK: Sandbox.Connect with the tag).
const StartTag = "start"

// DefaultReadyTimeout is how long a create waits for a template's ready
// check when neither the template nor the server sets another.
const DefaultReadyTimeout = 60 * time.Second

// readyPoll is the interval between two tries of a ready check.
const readyPoll = 150 * time.Millisecond

// startOutputTail is how much of the start command's output a failed
// create reports.
const startOutputTail = 2 << 10

// runStartCommand runs the template's start command in sandbox sb (already
// running, its agent answering) and waits for the template's ready check.
//
// Semantics, in order:
//
//  1. no start command and no ready check: nothing to do;
//  2. the start command is started through the agent's process service as
//     a background process tagged StartTag, as the sandbox's default user,
//     with the template's environment and working directory (the agent's
//     defaults); a command that cannot be started fails the create;
//  3. without a ready check the create returns as soon as it runs;
//  4. with one (ReadyCmd exits 0, ReadyPort accepts a connection; both
//     when both are set), it is tried every readyPoll until it passes or
//     the ready timeout ends; if the start command exits with a non-zero
//     status (or is killed) meanwhile the create fails at once, with the
//     tail of its output; an exit with status 0 is fine (a command that
//     forks a daemon).
//
// Every failure is errdefs.ErrFailedPrecondition (the template, not the
// request nor the server, is at fault) with a message saying what failed.
func (m *Manager) runStartCommand(ctx context.Context, sb *Sandbox, tpl Template) error {
	if len(tpl.StartCmd) == 0 && tpl.ReadyCmd == "" && tpl.ReadyPort == 0 {
		return nil
	}
	if port, ok := e2bWaitForPort(tpl.ReadyCmd); ok && (tpl.ReadyPort == 0 || tpl.ReadyPort == port) {
		tpl.ReadyCmd, tpl.ReadyPort = "", port
	}
	timeout := firstNonZero(tpl.ReadyTimeout, m.cfg.ReadyTimeout, DefaultReadyTimeout)
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ag := newAgentClient(m, sb)
	defer ag.close()

	// ended receives the start command's end; nil channel when there is
	// none, so the select below never picks it.
	var ended chan startEnd
	if len(tpl.StartCmd) > 0 {
		ended = make(chan startEnd, 1)
		tag := StartTag
		req := &pb.StartRequest{
			Process: &pb.ProcessConfig{Cmd: tpl.StartCmd[0], Args: tpl.StartCmd[1:]},
			Tag:     &tag,
		}
		// The stream lives as long as this function: closing it only
		// unsubscribes, the process keeps running. It is not bound to the
		// ready deadline, so that reaching the deadline is reported as
		// such and not as a lost stream.
		sctx, scancel := context.WithCancel(parent)
		defer scancel()
		stream, err := ag.proc.Start(sctx, ag.request(req))
		if err != nil {
			return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "template %q: start command %s could not be started: %s", tpl.Name, quoteArgv(tpl.StartCmd), connectMessage(err))
		}
		// The first event says the process exists (or the stream ends with
		// the spawn's error).
		if !stream.Receive() {
			err := stream.Err()
			stream.Close()
			if err == nil {
				err = errors.New("stream ended before the start event")
			}
			return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "template %q: start command %s could not be started: %s", tpl.Name, quoteArgv(tpl.StartCmd), connectMessage(err))
		}
		// From here on only readStartStream touches the stream (a stream
		// is not safe for concurrent use); scancel ends it.
		go readStartStream(stream, ended)
	}
	if tpl.ReadyCmd == "" && tpl.ReadyPort == 0 {
		return nil
	}
	lastWhy := "no try of the check completed"
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		select {
		case e := <-ended:
			if !e.ok() {
				return errdefs.New(errdefs.ErrFailedPrecondition, "template %q: start command %s %s before the sandbox was ready%s", tpl.Name, quoteArgv(tpl.StartCmd), e.describe(), e.outputNote())
			}
			ended = nil // exited 0: keep waiting for the ready check
			continue
		default:
		}
		why, err := m.readyCheck(ctx, ag, tpl)
		if err == nil {
			return nil
		}
		if why != "" && ctx.Err() == nil {
			lastWhy = why // not a try cut short by the deadline
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err() // the caller went away
			}
			return errdefs.New(errdefs.ErrFailedPrecondition, "template %q: the sandbox was not ready within %s (%s)", tpl.Name, timeout, lastWhy)
		case e := <-ended:
			if !e.ok() {
				return errdefs.New(errdefs.ErrFailedPrecondition, "template %q: start command %s %s before the sandbox was ready%s", tpl.Name, quoteArgv(tpl.StartCmd), e.describe(), e.outputNote())
			}
			ended = nil
		case <-tick.C:
		}
	}
}

// readyCheck tries the template's ready check once. It returns nil when it
// passes, else an error and a short reason for the final message.
func (m *Manager) readyCheck(ctx context.Context, ag *agentClient, tpl Template) (string, error) {
	if tpl.ReadyPort != 0 {
		conn, err := m.dialAgent(ctx, ag.sb.ID)
		if err != nil {
			return "agent unreachable", err
		}
		tc, err := tunnel.Dial(ctx, conn, ag.sb.EnvdToken, tpl.ReadyPort)
		if err != nil {
			conn.Close()
			return fmt.Sprintf("nothing accepted connections on port %d", tpl.ReadyPort), err
		}
		tc.Close()
	}
	if tpl.ReadyCmd != "" {
		// A try may take up to the whole ready timeout: E2B's
		// waitForTimeout(ms) is `sleep N`, which must be let finish.
		stream, err := ag.proc.Start(ctx, ag.request(&pb.StartRequest{
			Process: &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", tpl.ReadyCmd}},
		}))
		if err != nil {
			return "ready command could not be started: " + connectMessage(err), err
		}
		defer stream.Close()
		var e startEnd
		for stream.Receive() {
			e.add(stream.Msg().GetEvent())
		}
		if err := stream.Err(); err != nil {
			return "ready command: " + connectMessage(err), err
		}
		if !e.ok() {
			return fmt.Sprintf("ready command %q %s%s", tpl.ReadyCmd, e.describe(), e.outputNote()), errors.New("ready command failed")
		}
	}
	return "", nil
}

// e2bReadyPort matches the ready command E2B's SDKs make of
// waitForPort(port).
var e2bReadyPort = regexp.MustCompile(`^\[ -n "\$\(ss -Htuln sport = :([0-9]{1,5})\)" \]$`)

// e2bWaitForPort recognises E2B's waitForPort ready command, which needs
// iproute2's ss in the template (the base template, like many images, has
// none), and returns its port: the check then connects to the port
// instead, which needs nothing in the sandbox.
func e2bWaitForPort(cmd string) (int, bool) {
	m := e2bReadyPort.FindStringSubmatch(strings.TrimSpace(cmd))
	if m == nil {
		return 0, false
	}
	p, err := strconv.Atoi(m[1])
	if err != nil || p < 1 || p > 65535 {
		return 0, false
	}
	return p, true
}

// startEnd accumulates a process's output tail and its end event.
type startEnd struct {
	end  *pb.ProcessEvent_EndEvent
	out  []byte
	lost error // the stream broke before the end event
}

func (e *startEnd) add(ev *pb.ProcessEvent) {
	switch x := ev.GetEvent().(type) {
	case *pb.ProcessEvent_Data:
		b := x.Data.GetStdout()
		if b == nil {
			b = x.Data.GetStderr()
		}
		e.out = append(e.out, b...)
		if len(e.out) > startOutputTail {
			e.out = append([]byte(nil), e.out[len(e.out)-startOutputTail:]...)
		}
	case *pb.ProcessEvent_End:
		e.end = x.End
	}
}

func (e startEnd) ok() bool {
	return e.lost == nil && e.end != nil && e.end.GetExited() && e.end.GetExitCode() == 0
}

func (e startEnd) describe() string {
	switch {
	case e.end == nil:
		return "lost its output stream"
	case e.end.GetExited():
		return fmt.Sprintf("exited with status %d", e.end.GetExitCode())
	default:
		return "was killed (" + e.end.GetStatus() + ")"
	}
}

func (e startEnd) outputNote() string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(e.out), "?"))
	if s == "" {
		return ""
	}
	return "; its output ended with: " + s
}

func readStartStream(stream *connect.ServerStreamForClient[pb.StartResponse], ended chan<- startEnd) {
	defer stream.Close()
	var e startEnd
	for stream.Receive() {
		e.add(stream.Msg().GetEvent())
		if e.end != nil {
			break
		}
	}
	if e.end == nil {
		e.lost = stream.Err()
		if e.lost == nil {
			e.lost = errors.New("stream ended")
		}
		// The stream was cancelled by runStartCommand returning: nobody
		// reads ended any more, and it is buffered.
	}
	ended <- e
}

func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]{}!#~") {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return "`" + strings.Join(q, " ") + "`"
}

// connectMessage is the message of an error from the agent, without the
// Connect code prefix.
func connectMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}

// agentClient is the Manager's own client of one sandbox's agent, over its
// unix socket.
type agentClient struct {
	sb   *Sandbox
	hc   *http.Client
	proc processconnect.ProcessClient
}

func newAgentClient(m *Manager, sb *Sandbox) *agentClient {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return m.dialAgent(ctx, sb.ID) },
	}}
	return &agentClient{sb: sb, hc: hc, proc: processconnect.NewProcessClient(hc, "http://agent")}
}

// request wraps msg with the sandbox's access token. No user is named: the
// agent runs it as the sandbox's default user.
func (a *agentClient) request(msg *pb.StartRequest) *connect.Request[pb.StartRequest] {
	req := connect.NewRequest(msg)
	req.Header().Set(agentapi.AccessTokenHeader, a.sb.EnvdToken)
	return req
}

func (a *agentClient) close() { a.hc.CloseIdleConnections() }
