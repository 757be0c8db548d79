package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sbxdev/sbx/gen/process"
)

// PTYSize is the size of a pseudo-terminal in character cells.
type PTYSize struct {
	Cols uint32 `json:"cols"`
	Rows uint32 `json:"rows"`
}

// Signal is a signal that can be sent to a process in a sandbox.
type Signal int32

// The signals the agent accepts.
const (
	SIGTERM Signal = Signal(process.Signal_SIGNAL_SIGTERM)
	SIGKILL Signal = Signal(process.Signal_SIGNAL_SIGKILL)
)

// ExecOptions describe a process to run with [Sandbox.Exec] or
// [Sandbox.Start].
type ExecOptions struct {
	// Cmd is the program to run. It is not interpreted by a shell; use
	// [Sandbox.Run], or Cmd "/bin/bash" with Args "-l", "-c", script, for
	// shell syntax.
	Cmd string
	// Args are the program's arguments, not including Cmd itself.
	Args []string
	// Env adds to the sandbox's environment.
	Env map[string]string
	// Cwd is the working directory; empty means the user's home.
	Cwd string
	// User is the user to run as; empty means the template's default user
	// ("user"), "root" runs as root.
	User string
	// Tag names the process so that [Sandbox.ConnectProcess] can find it.
	Tag string
	// Stdin, when not nil, is copied to the process's standard input (or its
	// terminal, with PTY) and, for a process without PTY, standard input is
	// closed when Stdin reaches EOF. With Stdin nil the process gets no
	// input, unless KeepStdin is set.
	Stdin io.Reader
	// KeepStdin opens the process's standard input even though Stdin is nil,
	// for input sent later with [Process.SendInput].
	KeepStdin bool
	// Stdout and Stderr receive the process's output as it arrives; nil
	// discards it. With PTY, all terminal output goes to Stdout, raw.
	// Each is written from a single goroutine.
	Stdout, Stderr io.Writer
	// PTY, when not nil, runs the process on a pseudo-terminal of this size.
	// TERM, LANG and LC_ALL default to xterm-256color and C.UTF-8.
	PTY *PTYSize
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// ExitCode is the process's exit status; -1 when it was killed by a
	// signal.
	ExitCode int `json:"exitCode"`
	// Exited is true when the process exited by itself rather than by a
	// signal.
	Exited bool `json:"exited"`
	// Status is the agent's description, such as "exit status 1" or
	// "signal: killed".
	Status string `json:"status,omitempty"`
	// Error is the agent's error text: why the process could not run, or,
	// as envd reports it, a nonzero exit ("exit status 3") or a signal.
	Error string `json:"error,omitempty"`
}

// Process is a process running in a sandbox, returned by [Sandbox.Start] and
// [Sandbox.ConnectProcess]. Its output is copied to the writers given when it
// was started while the stream lasts. Its methods are safe for concurrent use.
type Process struct {
	// PID is the process ID inside the sandbox.
	PID uint32
	// Tag is the tag it was started with, if any.
	Tag string

	sb     *Sandbox
	user   string
	pty    bool
	cancel context.CancelFunc
	done   chan struct{}
	// status and err are written once, before done is closed.
	status ExitStatus
	err    error
}

// events abstracts the two server streams that carry process events (Start
// and Connect), which differ only in their message type.
type events struct {
	next  func() (*process.ProcessEvent, bool)
	err   func() error
	close func() error
}

func eventsOf[T any, PT interface {
	*T
	GetEvent() *process.ProcessEvent
}](s *connect.ServerStreamForClient[T]) events {
	return events{
		next: func() (*process.ProcessEvent, bool) {
			if !s.Receive() {
				return nil, false
			}
			return PT(s.Msg()).GetEvent(), true
		},
		err:   s.Err,
		close: s.Close,
	}
}

// awaitStart reads events until the start event and returns its PID.
func awaitStart(ev events, op string) (uint32, error) {
	for {
		e, ok := ev.next()
		if !ok {
			if err := ev.err(); err != nil {
				return 0, rpcErr(op, err)
			}
			return 0, rpcErr(op, io.ErrUnexpectedEOF)
		}
		switch x := e.GetEvent().(type) {
		case *process.ProcessEvent_Start:
			return x.Start.GetPid(), nil
		case *process.ProcessEvent_End:
			return 0, rpcErr(op, fmt.Errorf("process ended before it started: %s", endText(x.End)))
		}
	}
}

func endText(e *process.ProcessEvent_EndEvent) string {
	if e.GetError() != "" {
		return e.GetError()
	}
	return e.GetStatus()
}

// Start starts a process and returns as soon as it runs. Its output is copied
// to opts.Stdout and opts.Stderr in the background; call [Process.Wait] for
// its end. Cancelling ctx disconnects from the process without stopping it;
// use [Process.Kill] to stop it.
func (s *Sandbox) Start(ctx context.Context, opts ExecOptions) (*Process, error) {
	if opts.Cmd == "" {
		return nil, fmt.Errorf("sbx: start process: empty command: %w", ErrInvalidArgument)
	}
	env := opts.Env
	cfg := &process.ProcessConfig{Cmd: opts.Cmd, Args: opts.Args}
	req := &process.StartRequest{Process: cfg}
	if opts.PTY != nil {
		env = make(map[string]string, len(opts.Env)+3)
		for k, v := range map[string]string{"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"} {
			env[k] = v
		}
		for k, v := range opts.Env {
			env[k] = v
		}
		req.Pty = &process.PTY{Size: &process.PTY_Size{Cols: opts.PTY.Cols, Rows: opts.PTY.Rows}}
	}
	cfg.Envs = env
	if opts.Cwd != "" {
		cfg.Cwd = &opts.Cwd
	}
	if opts.Tag != "" {
		req.Tag = &opts.Tag
	}
	stdin := opts.Stdin != nil || opts.KeepStdin
	req.Stdin = &stdin

	sctx, cancel := context.WithCancel(ctx)
	creq := withUser(connect.NewRequest(req), opts.User)
	creq.Header().Set(headerKeepalive, keepaliveIntervalS)
	stream, err := s.rpc().Start(sctx, creq)
	if err != nil {
		cancel()
		return nil, rpcErr("start process", err)
	}
	ev := eventsOf(stream)
	pid, err := awaitStart(ev, "start process")
	if err != nil {
		ev.close()
		cancel()
		return nil, err
	}
	p := &Process{PID: pid, Tag: opts.Tag, sb: s, user: opts.User, pty: opts.PTY != nil, cancel: cancel, done: make(chan struct{})}
	go p.pump(ev, opts.Stdout, opts.Stderr)
	if opts.Stdin != nil {
		go p.feed(sctx, opts.Stdin)
	}
	return p, nil
}

// ConnectProcessOptions select a running process for [Sandbox.ConnectProcess].
type ConnectProcessOptions struct {
	// PID selects the process by ID; when zero, Tag selects it.
	PID uint32
	Tag string
	// Stdout and Stderr receive output from now on, as in [ExecOptions].
	Stdout, Stderr io.Writer
	// PTY tells that the process runs on a pseudo-terminal, so that
	// [Process.SendInput] writes to the terminal.
	PTY bool
	// User is sent with the process's later calls, as in [ExecOptions].
	User string
}

// ConnectProcess attaches to a process already running in the sandbox,
// started by [Sandbox.Start] or any other client of the agent. Output that
// the process wrote before is not replayed. Cancelling ctx disconnects.
func (s *Sandbox) ConnectProcess(ctx context.Context, opts ConnectProcessOptions) (*Process, error) {
	sel := &process.ProcessSelector{}
	switch {
	case opts.PID != 0:
		sel.Selector = &process.ProcessSelector_Pid{Pid: opts.PID}
	case opts.Tag != "":
		sel.Selector = &process.ProcessSelector_Tag{Tag: opts.Tag}
	default:
		return nil, fmt.Errorf("sbx: connect process: no PID or tag: %w", ErrInvalidArgument)
	}
	sctx, cancel := context.WithCancel(ctx)
	creq := withUser(connect.NewRequest(&process.ConnectRequest{Process: sel}), opts.User)
	creq.Header().Set(headerKeepalive, keepaliveIntervalS)
	stream, err := s.rpc().Connect(sctx, creq)
	if err != nil {
		cancel()
		return nil, rpcErr("connect process", err)
	}
	ev := eventsOf(stream)
	pid, err := awaitStart(ev, "connect process")
	if err != nil {
		ev.close()
		cancel()
		return nil, err
	}
	p := &Process{PID: pid, Tag: opts.Tag, sb: s, user: opts.User, pty: opts.PTY, cancel: cancel, done: make(chan struct{})}
	go p.pump(ev, opts.Stdout, opts.Stderr)
	return p, nil
}

// pump copies output events to the writers until the end event or the
// stream's end. A failing writer stops receiving its output, not the stream.
func (p *Process) pump(ev events, stdout, stderr io.Writer) {
	defer close(p.done)
	defer p.cancel()
	defer ev.close()
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	var werr error
	write := func(w *io.Writer, b []byte) {
		if _, err := (*w).Write(b); err != nil {
			werr = err
			*w = io.Discard
		}
	}
	for {
		e, ok := ev.next()
		if !ok {
			break
		}
		switch x := e.GetEvent().(type) {
		case *process.ProcessEvent_Data:
			switch o := x.Data.GetOutput().(type) {
			case *process.ProcessEvent_DataEvent_Stdout:
				write(&stdout, o.Stdout)
			case *process.ProcessEvent_DataEvent_Stderr:
				write(&stderr, o.Stderr)
			case *process.ProcessEvent_DataEvent_Pty:
				write(&stdout, o.Pty)
			}
		case *process.ProcessEvent_End:
			p.status = ExitStatus{
				ExitCode: int(x.End.GetExitCode()),
				Exited:   x.End.GetExited(),
				Status:   x.End.GetStatus(),
				Error:    x.End.GetError(),
			}
			if werr != nil {
				p.err = fmt.Errorf("sbx: process %d: write output: %w", p.PID, werr)
			}
			// Read the stream to its end (the agent ends it right after
			// the end event): a stream closed early costs the pooled
			// connections to the server and, behind it, to the agent.
			for {
				if _, ok := ev.next(); !ok {
					break
				}
			}
			return
		}
	}
	if err := ev.err(); err != nil {
		p.err = rpcErr(fmt.Sprintf("process %d", p.PID), err)
	} else {
		p.err = rpcErr(fmt.Sprintf("process %d", p.PID), fmt.Errorf("stream ended without exit status: %w", io.ErrUnexpectedEOF))
	}
}

// feed copies r to the process's input; at EOF it closes standard input
// (there is no EOF to send to a terminal). It stops at the first error,
// such as the process having ended.
func (p *Process) feed(ctx context.Context, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if serr := p.SendInput(ctx, buf[:n]); serr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && !p.pty {
				_ = p.CloseStdin(ctx)
			}
			return
		}
	}
}

// Done returns a channel closed when the process's stream has ended: the
// process exited, or the connection was lost or cancelled.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to end and returns how it ended. An error means
// the exit status is unknown: ctx ended, the process was disconnected, or
// the connection failed. A nonzero exit code is not an error.
func (p *Process) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-p.done:
		return p.status, p.err
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
}

// Disconnect stops receiving the process's output without stopping the
// process; [Process.Wait] then returns an error.
func (p *Process) Disconnect() { p.cancel() }

func (p *Process) selector() *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: p.PID}}
}

// SendInput writes data to the process's standard input, or to its terminal
// when it runs on a PTY. The process must have been started with Stdin or
// KeepStdin (or a PTY).
func (p *Process) SendInput(ctx context.Context, data []byte) error {
	in := &process.ProcessInput{}
	if p.pty {
		in.Input = &process.ProcessInput_Pty{Pty: data}
	} else {
		in.Input = &process.ProcessInput_Stdin{Stdin: data}
	}
	_, err := p.sb.rpc().SendInput(ctx, withUser(connect.NewRequest(&process.SendInputRequest{Process: p.selector(), Input: in}), p.user))
	return rpcErr("send input", err)
}

// CloseStdin closes the process's standard input, so that it reads EOF.
func (p *Process) CloseStdin(ctx context.Context) error {
	_, err := p.sb.rpc().CloseStdin(ctx, withUser(connect.NewRequest(&process.CloseStdinRequest{Process: p.selector()}), p.user))
	return rpcErr("close stdin", err)
}

// Signal sends sig to the process.
func (p *Process) Signal(ctx context.Context, sig Signal) error {
	_, err := p.sb.rpc().SendSignal(ctx, withUser(connect.NewRequest(&process.SendSignalRequest{Process: p.selector(), Signal: process.Signal(sig)}), p.user))
	return rpcErr("send signal", err)
}

// Kill sends SIGKILL to the process.
func (p *Process) Kill(ctx context.Context) error { return p.Signal(ctx, SIGKILL) }

// Resize changes the size of the process's pseudo-terminal.
func (p *Process) Resize(ctx context.Context, size PTYSize) error {
	req := &process.UpdateRequest{Process: p.selector(), Pty: &process.PTY{Size: &process.PTY_Size{Cols: size.Cols, Rows: size.Rows}}}
	_, err := p.sb.rpc().Update(ctx, withUser(connect.NewRequest(req), p.user))
	return rpcErr("resize", err)
}

// Exec runs a process to its end, streaming its output to opts.Stdout and
// opts.Stderr as it arrives, and returns its exit code. A nonzero exit code
// is not an error. If ctx ends first, Exec kills the process (best effort)
// and returns ctx's error.
func (s *Sandbox) Exec(ctx context.Context, opts ExecOptions) (int, error) {
	st, err := s.exec(ctx, opts)
	return st.ExitCode, err
}

func (s *Sandbox) exec(ctx context.Context, opts ExecOptions) (ExitStatus, error) {
	p, err := s.Start(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			// The deadline passed before the process started (a slow
			// start under load): the caller's error, as after Wait.
			return ExitStatus{}, ctx.Err()
		}
		return ExitStatus{}, err
	}
	st, err := p.Wait(ctx)
	if err != nil && ctx.Err() == nil && deadlineEnded(ctx, err) {
		// The server enforces the deadline the request carried and may
		// end the stream a moment before ctx's own timer fires: it is
		// still the caller's deadline.
		<-ctx.Done()
	}
	if err != nil && ctx.Err() != nil {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = p.Kill(kctx)
		return ExitStatus{}, ctx.Err()
	}
	return st, err
}

// deadlineEnded reports whether err is the server ending a stream for the
// deadline ctx sent with it: a cancellation or deadline code while ctx's
// deadline is at most a moment away.
func deadlineEnded(ctx context.Context, err error) bool {
	dl, ok := ctx.Deadline()
	if !ok || time.Until(dl) > 100*time.Millisecond {
		return false
	}
	code := connect.CodeOf(err)
	return code == connect.CodeDeadlineExceeded || code == connect.CodeCanceled
}

// RunOptions tune [Sandbox.Run]; the zero value runs as the default user in
// the home directory.
type RunOptions struct {
	Env  map[string]string
	Cwd  string
	User string
	// Stdin, when not nil, is the command's standard input.
	Stdin io.Reader
	// Timeout, when positive, bounds the run; the command is killed when it
	// passes.
	Timeout time.Duration
}

// Result is the outcome of [Sandbox.Run].
type Result struct {
	ExitCode int    `json:"exitCode"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// Error is the agent's error text, such as "exit status 3"; see
	// [ExitStatus.Error].
	Error string `json:"error,omitempty"`
}

// Err returns nil when the command succeeded and an [*ExitError] otherwise.
func (r *Result) Err() error {
	if r.ExitCode == 0 && r.Error == "" {
		return nil
	}
	return &ExitError{Result: r}
}

// ExitError reports a command that did not succeed.
type ExitError struct {
	Result *Result
}

// Error implements error.
func (e *ExitError) Error() string {
	msg := fmt.Sprintf("sbx: command exited with code %d", e.Result.ExitCode)
	if x := e.Result.Error; x != "" && !strings.HasPrefix(x, "exit status ") && !strings.HasPrefix(x, "signal: ") {
		msg += ": " + x
	}
	if s := strings.TrimSpace(e.Result.Stderr); s != "" {
		if len(s) > 500 {
			s = s[len(s)-500:]
		}
		msg += "\n" + s
	}
	return msg
}

// Run runs cmd with bash as a login shell (/bin/bash -l -c cmd, as the e2b
// SDKs do), waits for it and returns its output and exit code. opts may be
// nil. A nonzero exit code is not an error; see [Result.Err].
func (s *Sandbox) Run(ctx context.Context, cmd string, opts *RunOptions) (*Result, error) {
	if opts == nil {
		opts = &RunOptions{}
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	var stdout, stderr syncBuffer
	st, err := s.exec(ctx, ExecOptions{
		Cmd: "/bin/bash", Args: []string{"-l", "-c", cmd},
		Env: opts.Env, Cwd: opts.Cwd, User: opts.User, Stdin: opts.Stdin,
		Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		return nil, err
	}
	return &Result{ExitCode: st.ExitCode, Stdout: stdout.String(), Stderr: stderr.String(), Error: st.Error}, nil
}

// syncBuffer is a bytes.Buffer safe to read after the writer goroutine ends
// and in the meantime.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
