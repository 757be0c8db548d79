package interp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// lineKernel is a kernel process of sbx's own: kernel.js on Node.js
// (nodeKernel) or pykernel.py on Python (startPython). It takes cells as
// JSON lines, {"id", "code", "env"}, on one pipe and answers on another with
// JSON lines shaped like Jupyter iopub messages, {"parent", "msg_type",
// "content"}, the first of which says it is ready. Messages are routed to
// their waiter by parent; those nobody waits for are dropped.
type lineKernel struct {
	log *slog.Logger
	cmd *exec.Cmd
	dir string
	in  *os.File // the requests pipe

	dead    chan struct{}
	exitErr error

	mu      sync.Mutex
	waiters map[string]*waiter
	wmu     sync.Mutex // serialises writes to in
}

// lineKernelSpec is how to start a lineKernel.
type lineKernelSpec struct {
	argv []string
	cwd  string
	env  []string
	// dir is the kernel's private directory, removed when it ends.
	dir string
	// stdinRequests: requests come on stdin and answers go to fd 3
	// (kernel.js); otherwise stdin is /dev/null, requests come on fd 3 and
	// answers go to fd 4 (pykernel.py), so that what the user's code
	// starts cannot read the requests.
	stdinRequests bool
	// pdeathsig, when set, is sent to the kernel when the server's
	// thread that started it ends (the server exiting), so that no
	// kernel outlives its server.
	pdeathsig syscall.Signal
}

// startLineKernel starts spec's process and returns once it says it is
// ready. It removes spec.dir if it fails.
func startLineKernel(ctx context.Context, spec lineKernelSpec, log *slog.Logger) (*lineKernel, error) {
	fail := func(err error, files ...*os.File) (*lineKernel, error) {
		for _, f := range files {
			f.Close()
		}
		os.RemoveAll(spec.dir)
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("start kernel: %w", err))
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("start kernel: %w", err), inR, inW)
	}
	cmd := exec.Command(spec.argv[0], spec.argv[1:]...)
	cmd.Dir, cmd.Env = spec.cwd, spec.env
	// The kernel's own log (start-up failures, crashes) goes where the
	// server's goes: the sandbox's start process output.
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if spec.stdinRequests {
		cmd.Stdin = inR
		cmd.ExtraFiles = []*os.File{outW} // fd 3
	} else {
		cmd.ExtraFiles = []*os.File{inR, outW} // fds 3 and 4
	}
	// Its own process group, so that a restart or removal also ends what
	// the kernel started (subprocesses of the user's code).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: spec.pdeathsig}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		return fail(fmt.Errorf("start kernel %s: %w", spec.argv[0], err), inW, outR)
	}
	k := &lineKernel{log: log, cmd: cmd, dir: spec.dir, in: inW, dead: make(chan struct{}), waiters: map[string]*waiter{}}
	started := make(chan struct{})
	go k.read(outR, started)
	go func() {
		k.exitErr = cmd.Wait()
		close(k.dead)
	}()
	select {
	case <-started:
		return k, nil
	case <-k.dead:
		k.kill()
		return nil, k.deathError()
	case <-ctx.Done():
		k.kill()
		return nil, fmt.Errorf("kernel did not start: %w", ctx.Err())
	}
}

// read delivers the kernel's messages until its answers pipe closes.
func (k *lineKernel) read(r *os.File, started chan struct{}) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxFrame)
	first := true
	for sc.Scan() {
		var raw struct {
			Parent  string          `json:"parent"`
			MsgType string          `json:"msg_type"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			k.log.Warn("bad message from the kernel", "err", err)
			continue
		}
		if first {
			first = false
			close(started)
			continue
		}
		m := &message{channel: "iopub", Content: raw.Content}
		m.Header.MsgType = raw.MsgType
		m.Parent.MsgID = raw.Parent
		k.mu.Lock()
		w := k.waiters[raw.Parent]
		k.mu.Unlock()
		if w != nil {
			w.push(m)
		}
	}
}

// send sends cell id and registers w for its messages.
func (k *lineKernel) send(id, code string, env map[string]string, w *waiter) error {
	b, err := json.Marshal(map[string]any{"id": id, "code": code, "env": env})
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.waiters[id] = w
	w.ids = append(w.ids, id)
	k.mu.Unlock()
	k.wmu.Lock()
	_, err = k.in.Write(append(b, '\n'))
	k.wmu.Unlock()
	if err != nil {
		if !k.alive() {
			return k.deathError()
		}
		return fmt.Errorf("send to the kernel: %w", err)
	}
	return nil
}

func (k *lineKernel) startCell(_ context.Context, code string, env map[string]string, w *waiter) (string, func(), error) {
	id := newID()
	if err := k.send(id, code, env, w); err != nil {
		return "", nil, err
	}
	return id, func() {}, nil
}

func (k *lineKernel) unwait(w *waiter) {
	k.mu.Lock()
	for _, id := range w.ids {
		delete(k.waiters, id)
	}
	k.mu.Unlock()
}

// interrupt sends SIGINT to the kernel process (not its group: the
// kernel's own handler stops the cell).
func (k *lineKernel) interrupt() { k.cmd.Process.Signal(syscall.SIGINT) }

// kill ends the kernel's process group, waits for the kernel, and removes
// its directory.
func (k *lineKernel) kill() {
	syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	<-k.dead
	k.in.Close()
	os.RemoveAll(k.dir)
}

func (k *lineKernel) alive() bool {
	select {
	case <-k.dead:
		return false
	default:
		return true
	}
}

func (k *lineKernel) exited() <-chan struct{} { return k.dead }

func (k *lineKernel) deathError() error { return processDeath(k.exitErr) }

// processDeath is the kernelDiedError of a kernel process that ended with
// exitErr (what exec.Cmd.Wait returned).
func processDeath(exitErr error) error {
	var ee *exec.ExitError
	if errors.As(exitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			how := "was killed by signal " + ws.Signal().String()
			if ws.Signal() == syscall.SIGKILL {
				how += " (out of memory, or killed)"
			}
			return &kernelDiedError{how: how}
		}
		return &kernelDiedError{how: fmt.Sprintf("exited with status %d", ee.ExitCode())}
	}
	return &kernelDiedError{how: "exited"}
}
