package interp

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/evanw/esbuild/pkg/api"
)

//go:embed kernel.js
var kernelJS string

// nodeKernel is a JavaScript or TypeScript context: a Node.js process running kernel.js,
// which takes cells on its stdin and answers on fd 3 with iopub-shaped
// messages. The server needs no Jupyter kernel for JavaScript (Debian has
// none); node is in the template already.
type nodeKernel struct {
	log   *slog.Logger
	cmd   *exec.Cmd
	dir   string
	stdin *os.File

	dead    chan struct{}
	exitErr error

	// ts makes it a TypeScript context: each cell is transpiled to
	// JavaScript before it runs (tsCell).
	ts bool

	mu      sync.Mutex
	waiters map[string]*waiter
	wmu     sync.Mutex // serialises writes to stdin
}

// startNode starts cfg.Argv[0] (node) on kernel.js and returns once it
// said it runs.
func startNode(ctx context.Context, cfg kernelConfig, log *slog.Logger) (*nodeKernel, error) {
	dir, err := os.MkdirTemp("", "sbx-kernel-")
	if err != nil {
		return nil, fmt.Errorf("start kernel: %w", err)
	}
	script := filepath.Join(dir, "kernel.js")
	if err := os.WriteFile(script, []byte(kernelJS), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start kernel: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(cfg.Argv[0], append(cfg.Argv[1:], script)...)
	cmd.Dir, cmd.Env = cfg.Cwd, cfg.Env
	cmd.Stdin = inR
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{outW} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start kernel %s: %w", cfg.Argv[0], err)
	}
	k := &nodeKernel{log: log, cmd: cmd, dir: dir, stdin: inW, ts: cfg.TypeScript, dead: make(chan struct{}), waiters: map[string]*waiter{}}
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

// read delivers kernel.js's messages until fd 3 closes.
func (k *nodeKernel) read(r *os.File, started chan struct{}) {
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
			k.log.Warn("bad message from the JavaScript kernel", "err", err)
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

func (k *nodeKernel) startCell(_ context.Context, code string, env map[string]string, w *waiter) (string, func(), error) {
	id := newID()
	if k.ts {
		js, msgs := tsCell(id, code)
		if msgs != nil {
			for _, m := range msgs {
				w.push(m)
			}
			return id, func() {}, nil
		}
		code = js
	}
	b, err := json.Marshal(map[string]any{"id": id, "code": code, "env": env})
	if err != nil {
		return "", nil, err
	}
	k.mu.Lock()
	k.waiters[id] = w
	w.ids = append(w.ids, id)
	k.mu.Unlock()
	k.wmu.Lock()
	_, err = k.stdin.Write(append(b, '\n'))
	k.wmu.Unlock()
	if err != nil {
		if !k.alive() {
			return "", nil, k.deathError()
		}
		return "", nil, fmt.Errorf("send to the kernel: %w", err)
	}
	return id, func() {}, nil
}

func (k *nodeKernel) unwait(w *waiter) {
	k.mu.Lock()
	for _, id := range w.ids {
		delete(k.waiters, id)
	}
	k.mu.Unlock()
}

func (k *nodeKernel) interrupt() { k.cmd.Process.Signal(syscall.SIGINT) }

func (k *nodeKernel) kill() {
	syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	<-k.dead
	k.stdin.Close()
	os.RemoveAll(k.dir)
}

func (k *nodeKernel) alive() bool {
	select {
	case <-k.dead:
		return false
	default:
		return true
	}
}

func (k *nodeKernel) exited() <-chan struct{} { return k.dead }

func (k *nodeKernel) deathError() error { return processDeath(k.exitErr) }

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

// tsCell transpiles TypeScript cell code to the JavaScript the kernel runs:
// types are removed (not checked), enums and namespaces become objects,
// and top-level await stays, as the node REPL runs it. Code that does not
// parse returns the messages of a failed cell (a SyntaxError, then idle)
// instead, for cell id.
func tsCell(id, code string) (string, []*message) {
	r := api.Transform(code, api.TransformOptions{Loader: api.LoaderTS, Target: api.ESNext, Sourcefile: "cell.ts"})
	if len(r.Errors) == 0 {
		return string(r.Code), nil
	}
	var lines []string
	for _, e := range r.Errors {
		l := e.Text
		if e.Location != nil {
			l = fmt.Sprintf("cell.ts:%d:%d: %s\n    %s", e.Location.Line, e.Location.Column+1, e.Text, e.Location.LineText)
		}
		lines = append(lines, l)
	}
	return "", []*message{
		bashMessage(id, "error", map[string]any{"ename": "SyntaxError", "evalue": r.Errors[0].Text, "traceback": lines}),
		bashMessage(id, "status", map[string]any{"execution_state": "idle"}),
	}
}
