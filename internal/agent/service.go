package agent

import (
	"context"
	"errors"
	"io"
	"strconv"
	"syscall"
	"time"

	"connectrpc.com/connect"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/gen/process/processconnect"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// KeepalivePingHeader, on a streaming request, asks for a keepalive event
// every that many seconds, so proxies do not close an idle stream.
const KeepalivePingHeader = "Keepalive-Ping-Interval"

// processService implements envd's process.Process service.
type processService struct {
	a *Agent
}

var _ processconnect.ProcessHandler = processService{}

func (s processService) List(ctx context.Context, req *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	res := &pb.ListResponse{}
	for _, p := range s.a.procs.list() {
		res.Processes = append(res.Processes, p.info())
	}
	return connect.NewResponse(res), nil
}

func (s processService) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	name := s.a.requestUser(req.Header())
	u, err := systemUsers.lookup(name)
	if err != nil {
		return err
	}
	spec, err := s.a.resolve(req.Msg, u)
	if err != nil {
		return err
	}
	p, sub, err := s.a.start(spec, req.Msg.GetProcess(), req.Msg.Tag)
	if err != nil {
		return err
	}
	return follow(ctx, p, sub, nil, keepalive(req.Header().Get(KeepalivePingHeader)), func(ev *pb.ProcessEvent) error {
		return stream.Send(&pb.StartResponse{Event: ev})
	})
}

func (s processService) Connect(ctx context.Context, req *connect.Request[pb.ConnectRequest], stream *connect.ServerStream[pb.ConnectResponse]) error {
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return err
	}
	sub, end := p.out.subscribe()
	return follow(ctx, p, sub, end, keepalive(req.Header().Get(KeepalivePingHeader)), func(ev *pb.ProcessEvent) error {
		return stream.Send(&pb.ConnectResponse{Event: ev})
	})
}

// follow sends the start event, then p's events from sub until the end
// event, with keepalives in between. A client that goes away only
// unsubscribes: the process keeps running. If sub is nil the process has
// already ended and end is sent after the start event.
func follow(ctx context.Context, p *process, sub *subscriber, end *pb.ProcessEvent, every time.Duration, send func(*pb.ProcessEvent) error) error {
	if sub != nil {
		defer p.out.leave(sub)
	}
	if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: uint32(p.pid)}}}); err != nil {
		return err
	}
	if sub == nil {
		return send(end)
	}
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case ev, ok := <-sub.events:
			if !ok {
				return nil
			}
			if err := send(ev); err != nil {
				return err
			}
		case <-tick:
			if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}}); err != nil {
				return err
			}
		case <-ctx.Done():
			return connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
}

// keepalive parses the keepalive header: whole seconds, at least one.
func keepalive(v string) time.Duration {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

func (s processService) Update(ctx context.Context, req *connect.Request[pb.UpdateRequest]) (*connect.Response[pb.UpdateResponse], error) {
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if req.Msg.Pty != nil {
		if err := p.resize(req.Msg.GetPty()); err != nil {
			return nil, err
		}
	}
	return connect.NewResponse(&pb.UpdateResponse{}), nil
}

func (s processService) SendInput(ctx context.Context, req *connect.Request[pb.SendInputRequest]) (*connect.Response[pb.SendInputResponse], error) {
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if err := writeInput(p, req.Msg.GetInput()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.SendInputResponse{}), nil
}

func writeInput(p *process, in *pb.ProcessInput) error {
	switch v := in.GetInput().(type) {
	case *pb.ProcessInput_Stdin:
		return p.writeStdin(v.Stdin)
	case *pb.ProcessInput_Pty:
		return p.writePTY(v.Pty)
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "input (stdin or pty) is required")
	}
}

func (s processService) StreamInput(ctx context.Context, stream *connect.ClientStream[pb.StreamInputRequest]) (*connect.Response[pb.StreamInputResponse], error) {
	var p *process
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *pb.StreamInputRequest_Start:
			if p != nil {
				return nil, errdefs.New(errdefs.ErrInvalidArgument, "stream input: start event sent twice")
			}
			var err error
			if p, err = s.a.procs.get(ev.Start.GetProcess()); err != nil {
				return nil, err
			}
		case *pb.StreamInputRequest_Data:
			if p == nil {
				return nil, errdefs.New(errdefs.ErrInvalidArgument, "stream input: the first event must be a start event")
			}
			if err := writeInput(p, ev.Data.GetInput()); err != nil {
				return nil, err
			}
		case *pb.StreamInputRequest_Keepalive:
		}
	}
	if err := stream.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return connect.NewResponse(&pb.StreamInputResponse{}), nil
}

func (s processService) SendSignal(ctx context.Context, req *connect.Request[pb.SendSignalRequest]) (*connect.Response[pb.SendSignalResponse], error) {
	var sig syscall.Signal
	switch req.Msg.GetSignal() {
	case pb.Signal_SIGNAL_SIGTERM:
		sig = syscall.SIGTERM
	case pb.Signal_SIGNAL_SIGKILL:
		sig = syscall.SIGKILL
	default:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "unsupported signal %v", req.Msg.GetSignal())
	}
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if err := p.signal(sig); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.SendSignalResponse{}), nil
}

func (s processService) CloseStdin(ctx context.Context, req *connect.Request[pb.CloseStdinRequest]) (*connect.Response[pb.CloseStdinResponse], error) {
	p, err := s.a.procs.get(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if p.pty != nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "process %d reads from a PTY; send end of transmission (Ctrl-D) instead", p.pid)
	}
	if err := p.closeStdin(); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "close stdin of process %d", p.pid)
	}
	return connect.NewResponse(&pb.CloseStdinResponse{}), nil
}

// errorInterceptor turns the errors the handlers return into Connect errors
// with the code of their class and a client-safe message. It is the one place
// that does so for every service mounted on the agent.
type errorInterceptor struct{ a *Agent }

func (i errorInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err != nil {
			return nil, connectError(i.a.log, req.Spec().Procedure, err)
		}
		return res, nil
	}
}

func (i errorInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i errorInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := next(ctx, conn); err != nil {
			return connectError(i.a.log, conn.Spec().Procedure, err)
		}
		return nil
	}
}
