package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// drainGrace is how long output readers may keep waiting for end of file
// after the process has exited. A background grandchild can hold the pipe
// open forever; after the grace, what is already buffered is read and the
// end event is sent anyway.
const drainGrace = 100 * time.Millisecond

// readChunk is the largest data event the agent sends.
const readChunk = 32 << 10

// process is one process the agent started.
type process struct {
	pid    int
	tag    *string
	config *pb.ProcessConfig
	log    *slog.Logger

	out     *fanout
	exit    chan unix.WaitStatus // from the reaper, buffered
	done    chan struct{}        // closed after the end event
	outputs []*os.File           // read by the output readers

	pty *os.File // PTY master; nil without a PTY

	inMu  sync.Mutex
	stdin *os.File // write end of the stdin pipe; nil if not enabled or closed

	mu     sync.Mutex
	exited bool // reaped: the pid may be reused, never signal it again
}

// table holds the running processes by pid and by tag.
type table struct {
	mu    sync.Mutex
	byPID map[int]*process
	byTag map[string]*process // a nil value reserves a tag while starting
}

func newTable() *table {
	return &table{byPID: make(map[int]*process), byTag: make(map[string]*process)}
}

// get finds a running process by selector.
func (t *table) get(sel *pb.ProcessSelector) (*process, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s := sel.GetSelector().(type) {
	case *pb.ProcessSelector_Pid:
		if p := t.byPID[int(s.Pid)]; p != nil {
			return p, nil
		}
		return nil, errdefs.New(errdefs.ErrNotFound, "process with pid %d not found", s.Pid)
	case *pb.ProcessSelector_Tag:
		if p := t.byTag[s.Tag]; p != nil {
			return p, nil
		}
		return nil, errdefs.New(errdefs.ErrNotFound, "process with tag %q not found", s.Tag)
	default:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "process selector (pid or tag) is required")
	}
}

func (t *table) list() []*process {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := make([]*process, 0, len(t.byPID))
	for _, p := range t.byPID {
		ps = append(ps, p)
	}
	return ps
}

func (t *table) reserveTag(tag *string) error {
	if tag == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byTag[*tag]; ok {
		return errdefs.New(errdefs.ErrConflict, "a process with tag %q is already running", *tag)
	}
	t.byTag[*tag] = nil
	return nil
}

func (t *table) releaseTag(tag *string) {
	if tag == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byTag[*tag] == nil {
		delete(t.byTag, *tag)
	}
}

func (t *table) add(p *process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byPID[p.pid] = p
	if p.tag != nil {
		t.byTag[*p.tag] = p
	}
}

func (t *table) remove(p *process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byPID[p.pid] == p {
		delete(t.byPID, p.pid)
	}
	if p.tag != nil && t.byTag[*p.tag] == p {
		delete(t.byTag, *p.tag)
	}
}

// start forks the process described by spec and registers it. The returned
// subscriber is subscribed before any output is read, so the caller sees
// everything the process writes.
func (a *Agent) start(spec *spawnSpec, cfg *pb.ProcessConfig, tag *string) (*process, *subscriber, error) {
	if err := a.procs.reserveTag(tag); err != nil {
		return nil, nil, err
	}
	p := &process{
		tag:    tag,
		config: proto.Clone(cfg).(*pb.ProcessConfig),
		out:    newFanout(),
		exit:   make(chan unix.WaitStatus, 1),
		done:   make(chan struct{}),
	}
	if err := a.spawn(p, spec); err != nil {
		a.procs.releaseTag(tag)
		return nil, nil, err
	}
	p.log = a.log.With("pid", p.pid)
	sub, _ := p.out.subscribe()
	a.procs.add(p)
	p.log.Info("process started", "cmd", cfg.GetCmd(), "pty", spec.pty != nil, "tag", tag)
	go a.follow(p)
	return p, sub, nil
}

// spawn forks the process with its stdio, as spec's user, in its own process
// group (or, with a PTY, its own session) so that signals reach its children.
func (a *Agent) spawn(p *process, spec *spawnSpec) (err error) {
	var (
		child   []*os.File // the child's ends, closed in the parent after the fork
		parent  []*os.File // ours, closed if the fork fails
		files   [3]*os.File
		sysattr = &syscall.SysProcAttr{Credential: spec.cred}
	)
	defer func() {
		for _, f := range child {
			f.Close()
		}
		if err != nil {
			for _, f := range parent {
				f.Close()
			}
		}
	}()

	if spec.pty != nil {
		master, tty, err := openPTY(spec.pty)
		if err != nil {
			return err
		}
		child, parent = append(child, tty), append(parent, master)
		files = [3]*os.File{tty, tty, tty}
		p.pty = master
		p.outputs = []*os.File{master}
		// A new session with the terminal as its controlling tty, as a login
		// shell expects; the session leader's pid is also its process group.
		sysattr.Setsid, sysattr.Setctty, sysattr.Ctty = true, true, 0
	} else {
		if spec.stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return fmt.Errorf("stdin pipe: %w", err)
			}
			child, parent = append(child, r), append(parent, w)
			files[0], p.stdin = r, w
		} else {
			null, err := os.Open(os.DevNull)
			if err != nil {
				return fmt.Errorf("open %s: %w", os.DevNull, err)
			}
			child = append(child, null)
			files[0] = null
		}
		for i := 1; i <= 2; i++ {
			r, w, err := os.Pipe()
			if err != nil {
				return fmt.Errorf("output pipe: %w", err)
			}
			child, parent = append(child, w), append(parent, r)
			files[i] = w
			p.outputs = append(p.outputs, r)
		}
		sysattr.Setpgid = true
	}

	attr := &syscall.ProcAttr{
		Dir: spec.dir,
		Env: spec.env,
		// Fd puts the child's ends in blocking mode, as programs expect.
		Files: []uintptr{files[0].Fd(), files[1].Fd(), files[2].Fd()},
		Sys:   sysattr,
	}
	pid, err := a.reaper.start(func() (int, error) {
		return syscall.ForkExec(spec.path, spec.argv, attr)
	}, func(ws unix.WaitStatus) {
		p.mu.Lock()
		p.exited = true
		p.mu.Unlock()
		p.exit <- ws
	})
	runtime.KeepAlive(files)
	if err != nil {
		return execError(spec.argv[0], &os.PathError{Op: "fork/exec", Path: spec.path, Err: err})
	}
	p.pid = pid
	return nil
}

// follow reads the process's output until it has exited and its output is
// drained, then sends the end event and forgets the process.
func (a *Agent) follow(p *process) {
	var readers sync.WaitGroup
	for i, f := range p.outputs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			p.read(f, i)
		}()
	}
	readersDone := make(chan struct{})
	go func() { readers.Wait(); close(readersDone) }()

	ws := <-p.exit
	select {
	case <-readersDone:
	case <-time.After(drainGrace):
		// Something else holds the output open; read what is buffered, stop.
		for _, f := range p.outputs {
			_ = f.SetReadDeadline(time.Now())
		}
		<-readersDone
	}
	for _, f := range p.outputs {
		f.Close()
	}
	p.closeStdin()

	end := &pb.ProcessEvent_EndEvent{
		ExitCode: int32(ws.ExitStatus()),
		Exited:   ws.Exited(),
		Status:   statusString(ws),
	}
	if !ws.Exited() {
		end.ExitCode = -1 // as os.ProcessState.ExitCode for a signalled process
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		msg := end.Status
		end.Error = &msg
	}
	a.procs.remove(p)
	p.out.finish(&pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: end}})
	close(p.done)
	p.log.Info("process ended", "status", end.Status)
}

// read publishes what f yields; output index 0 is stdout (or the PTY) and 1
// is stderr.
func (p *process) read(f *os.File, index int) {
	buf := make([]byte, readChunk)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			p.publish(index, buf[:n])
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.drain(f, index, buf)
		} else if err != io.EOF && !errors.Is(err, syscall.EIO) { // EIO: the PTY's last holder is gone
			p.log.Warn("read process output", "err", err)
		}
		return
	}
}

// drain reads, without waiting, whatever f holds.
func (p *process) drain(f *os.File, index int, buf []byte) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = f.SetReadDeadline(time.Time{})
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return true // never wait for readiness
		}); err != nil {
			return
		}
		if n <= 0 || rerr != nil {
			return
		}
		p.publish(index, buf[:n])
	}
}

func (p *process) publish(index int, b []byte) {
	data := &pb.ProcessEvent_DataEvent{}
	chunk := append([]byte(nil), b...)
	switch {
	case p.pty != nil:
		data.Output = &pb.ProcessEvent_DataEvent_Pty{Pty: chunk}
	case index == 0:
		data.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: chunk}
	default:
		data.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: chunk}
	}
	p.out.publish(&pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: data}})
}

// signal sends sig to the process's whole group, so that its children get it
// too.
func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return errdefs.New(errdefs.ErrNotFound, "process %d has already exited", p.pid)
	}
	err := unix.Kill(-p.pid, sig)
	if errors.Is(err, unix.ESRCH) { // group gone but leader not reaped yet: try the leader alone
		err = unix.Kill(p.pid, sig)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", p.pid, err)
	}
	return nil
}

// writeStdin writes to the stdin pipe, or to the terminal of a PTY process.
func (p *process) writeStdin(b []byte) error {
	if p.pty != nil {
		return p.writePTY(b)
	}
	p.inMu.Lock()
	w := p.stdin
	p.inMu.Unlock()
	if w == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, "stdin of process %d is not open (start it with stdin: true; it may have been closed)", p.pid)
	}
	// Not under inMu: a process that does not read would otherwise block
	// CloseStdin too. Closing w releases a blocked Write.
	if _, err := w.Write(b); err != nil {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "write to stdin of process %d", p.pid)
	}
	return nil
}

func (p *process) writePTY(b []byte) error {
	if p.pty == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, "process %d has no PTY", p.pid)
	}
	if _, err := p.pty.Write(b); err != nil {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "write to the PTY of process %d", p.pid)
	}
	return nil
}

// closeStdin closes the stdin pipe so the process reads end of file.
func (p *process) closeStdin() error {
	p.inMu.Lock()
	w := p.stdin
	p.stdin = nil
	p.inMu.Unlock()
	if w == nil {
		return nil
	}
	return w.Close()
}

func (p *process) info() *pb.ProcessInfo {
	return &pb.ProcessInfo{Config: p.config, Pid: uint32(p.pid), Tag: p.tag}
}
