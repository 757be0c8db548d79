package interp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A kernel is one Jupyter kernel process (IRkernel, for R contexts) and the
// client side of its shell and iopub channels, spoken over ZMTP on Unix sockets in a
// private directory. Messages are routed to their waiter by the msg_id of
// their parent header; messages nobody waits for are dropped.
//
// The kernel's channels are read as fast as the kernel writes them: its
// iopub is a PUB socket, which drops messages when its queue is full, so a
// slow HTTP client must never stall the reader. What a waiter has not
// consumed yet is held in its queue, whose size is bounded by the
// execution's output limit (see waiter).
type kernel struct {
	log     *slog.Logger
	cmd     *exec.Cmd
	dir     string
	key     []byte
	session string

	shell, iopub *zmtpConn

	// dead is closed when the process has exited; exitErr is then set.
	dead    chan struct{}
	exitErr error

	mu      sync.Mutex
	waiters map[string]*waiter
}

// kernelConfig is how to start a kernel.
type kernelConfig struct {
	// Argv is the kernel's command; "{connection_file}" is replaced by the
	// connection file's path.
	Argv []string
	Cwd  string
	Env  []string
	// Python makes it a Python context (startPython): Argv is python3.
	Python bool
	// Node makes it a JavaScript context (nodeKernel): Argv is node.
	Node bool
	// TypeScript, with Node, makes it a TypeScript context: cells are
	// transpiled to JavaScript first.
	TypeScript bool
	// Bash makes it a bash context (bashKernel): Argv is bash.
	Bash bool
	// R makes it an R context: a Jupyter kernel (IRkernel, kernel), whose
	// silent code (env vars) is R.
	R bool
}

// message is a Jupyter message as the server needs it.
type message struct {
	channel string // "shell" or "iopub"
	Header  struct {
		MsgID   string `json:"msg_id"`
		MsgType string `json:"msg_type"`
	}
	Parent struct {
		MsgID string `json:"msg_id"`
	}
	Content json.RawMessage
}

const idsDelimiter = "<IDS|MSG>"

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// shmDir is where kernels' sockets go when it can hold them (startKernel).
const shmDir = "/dev/shm"

// startKernel starts a kernel and returns once it answers requests. It
// fails if that takes longer than ctx allows.
func startKernel(ctx context.Context, cfg kernelConfig, log *slog.Logger) (*kernel, error) {
	// The sockets go on /dev/shm, a tmpfs, where there is one: under
	// gVisor a socket bound on the rootfs (a gofer mount, with runsc's
	// --host-uds=create) is a host socket, which a checkpoint cannot save,
	// so a pause with memory would fail; on a tmpfs it is the Sentry's
	// own. Elsewhere, the temporary directory.
	dir, err := os.MkdirTemp(shmDir, "sbx-kernel-")
	if err != nil {
		dir, err = os.MkdirTemp("", "sbx-kernel-")
	}
	if err != nil {
		return nil, fmt.Errorf("start kernel: %w", err)
	}
	k := &kernel{log: log, dir: dir, session: newID(), dead: make(chan struct{}), waiters: map[string]*waiter{}}
	k.key = []byte(newID() + newID())
	// Unix sockets in a directory only this user can enter: other users
	// in the sandbox cannot talk to the kernel (the key signs messages as
	// well).
	conn := map[string]any{
		"transport": "ipc", "ip": filepath.Join(dir, "k"),
		"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
		"key": string(k.key), "signature_scheme": "hmac-sha256", "kernel_name": "ir",
	}
	b, _ := json.Marshal(conn)
	connFile := filepath.Join(dir, "connection.json")
	if err := os.WriteFile(connFile, b, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start kernel: %w", err)
	}
	argv := make([]string, len(cfg.Argv))
	for i, a := range cfg.Argv {
		argv[i] = strings.ReplaceAll(a, "{connection_file}", connFile)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = cfg.Cwd
	cmd.Env = cfg.Env
	// The kernel's own log (start-up warnings, crashes) goes where the
	// server's goes: the sandbox's start process output.
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Its own process group, so that a restart or removal also ends what
	// the kernel started (subprocesses of the user's code).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start kernel %s: %w", argv[0], err)
	}
	k.cmd = cmd
	go func() {
		k.exitErr = cmd.Wait()
		close(k.dead)
		k.closeChannels()
	}()
	if err := k.connect(ctx, filepath.Join(dir, "k")); err != nil {
		k.kill()
		return nil, err
	}
	return k, nil
}

// connect dials the kernel's shell and iopub sockets once it has bound them
// and waits until iopub delivers: a PUB socket drops what it publishes
// before the subscription reaches it, so requests are sent until one's
// status message arrives.
func (k *kernel) connect(ctx context.Context, prefix string) error {
	dial := func(path, typ string) (*zmtpConn, error) {
		for {
			c, err := net.Dial("unix", path)
			if err == nil {
				return zmtpHandshake(c, typ)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("kernel did not listen: %w", ctx.Err())
			case <-k.dead:
				return nil, k.deathError()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	var err error
	if k.shell, err = dial(prefix+"-1", "DEALER"); err != nil {
		return err
	}
	if k.iopub, err = dial(prefix+"-2", "SUB"); err != nil {
		return err
	}
	if err := k.iopub.Subscribe(); err != nil {
		return err
	}
	go k.read(k.shell, "shell")
	go k.read(k.iopub, "iopub")

	ready := newWaiter(1 << 20)
	defer k.unwait(ready)
	for {
		id, err := k.send("kernel_info_request", map[string]any{}, ready)
		if err != nil {
			return err
		}
		// A wait long enough for a kernel that is up, short enough to
		// resend soon when the subscription was not there yet.
		t := time.NewTimer(100 * time.Millisecond)
		for {
			m, err := ready.next(ctx, k.dead, t.C)
			if errors.Is(err, errWaitTimeout) {
				break
			}
			if errors.Is(err, io.EOF) {
				err = k.deathError()
			}
			if err != nil {
				t.Stop()
				return err
			}
			if m.channel == "iopub" && m.Parent.MsgID == id {
				t.Stop()
				return nil
			}
		}
	}
}

// read delivers the messages of one channel until it closes.
func (k *kernel) read(z *zmtpConn, channel string) {
	for {
		parts, err := z.Recv()
		if err != nil {
			return
		}
		m, err := k.decode(parts)
		if err != nil {
			k.log.Warn("bad message from the kernel", "channel", channel, "err", err)
			continue
		}
		m.channel = channel
		k.mu.Lock()
		w := k.waiters[m.Parent.MsgID]
		k.mu.Unlock()
		if w != nil {
			w.push(m)
		}
	}
}

func (k *kernel) sign(parts ...[]byte) []byte {
	h := hmac.New(sha256.New, k.key)
	for _, p := range parts {
		h.Write(p)
	}
	return []byte(hex.EncodeToString(h.Sum(nil)))
}

func (k *kernel) decode(parts [][]byte) (*message, error) {
	i := 0
	for i < len(parts) && string(parts[i]) != idsDelimiter {
		i++
	}
	if len(parts)-i < 6 {
		return nil, errors.New("too few frames")
	}
	sig, header, parent, _, content := parts[i+1], parts[i+2], parts[i+3], parts[i+4], parts[i+5]
	if !hmac.Equal(sig, k.sign(parts[i+2:i+6]...)) {
		return nil, errors.New("bad signature")
	}
	m := &message{Content: content}
	if err := json.Unmarshal(header, &m.Header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if err := json.Unmarshal(parent, &m.Parent); err != nil {
		return nil, fmt.Errorf("parent header: %w", err)
	}
	return m, nil
}

// send sends a shell request and registers w for the messages it causes.
func (k *kernel) send(msgType string, content any, w *waiter) (string, error) {
	id := newID()
	header, _ := json.Marshal(map[string]string{
		"msg_id": id, "msg_type": msgType, "session": k.session, "username": "user",
		"date": time.Now().UTC().Format(time.RFC3339Nano), "version": "5.3",
	})
	body, err := json.Marshal(content)
	if err != nil {
		return "", err
	}
	parent, meta := []byte("{}"), []byte("{}")
	k.mu.Lock()
	k.waiters[id] = w
	w.ids = append(w.ids, id)
	k.mu.Unlock()
	err = k.shell.Send([][]byte{[]byte(idsDelimiter), k.sign(header, parent, meta, body), header, parent, meta, body})
	if err != nil {
		select {
		case <-k.dead:
			return "", k.deathError()
		default:
		}
		return "", fmt.Errorf("send to the kernel: %w", err)
	}
	return id, nil
}

// unwait stops routing w's messages to it.
func (k *kernel) unwait(w *waiter) {
	k.mu.Lock()
	for _, id := range w.ids {
		delete(k.waiters, id)
	}
	k.mu.Unlock()
}

// startCell sends code to run, with env set in the kernel's environment
// for its duration (R code, rEnvCode), and returns its msg_id; call done
// once it is idle.
func (k *kernel) startCell(ctx context.Context, code string, env map[string]string, w *waiter) (string, func(), error) {
	done := func() {}
	if len(env) > 0 {
		set, restore := rEnvCode(env)
		if err := k.runSilent(ctx, set); err != nil {
			return "", nil, fmt.Errorf("set env vars: %w", err)
		}
		done = func() { k.runSilent(context.WithoutCancel(ctx), restore) }
	}
	// stop_on_error would have the kernel abort requests that reach it
	// shortly after a failed cell: the server sends one cell at a time,
	// so there is never a queued one to spare, only the next cell to lose.
	id, err := k.send("execute_request", map[string]any{
		"code": code, "silent": false, "store_history": true,
		"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": false,
	}, w)
	if err != nil {
		done()
		return "", nil, err
	}
	return id, done, nil
}

// exited is closed when the kernel process has exited.
func (k *kernel) exited() <-chan struct{} { return k.dead }

// runSilent runs code without output or history and reports its error.
func (k *kernel) runSilent(ctx context.Context, code string) error {
	w := newWaiter(1 << 20)
	defer k.unwait(w)
	id, err := k.send("execute_request", map[string]any{
		"code": code, "silent": true, "store_history": false,
		"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": false,
	}, w)
	if err != nil {
		return err
	}
	for {
		m, err := w.next(ctx, k.dead, nil)
		if errors.Is(err, io.EOF) {
			return k.deathError()
		}
		if err != nil {
			return err
		}
		if m.channel != "shell" || m.Parent.MsgID != id {
			continue
		}
		var reply struct {
			Status string `json:"status"`
			EName  string `json:"ename"`
			EValue string `json:"evalue"`
		}
		json.Unmarshal(m.Content, &reply)
		if reply.Status == "error" {
			return fmt.Errorf("%s: %s", reply.EName, reply.EValue)
		}
		return nil
	}
}

// interrupt sends the kernel SIGINT, which stops the running cell (its
// interrupt mode is "signal").
func (k *kernel) interrupt() {
	if k.cmd != nil && k.cmd.Process != nil {
		k.cmd.Process.Signal(syscall.SIGINT)
	}
}

// kill ends the kernel and everything in its process group and waits for
// it, then removes its directory.
func (k *kernel) kill() {
	if k.cmd != nil && k.cmd.Process != nil {
		syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		<-k.dead
	}
	k.closeChannels()
	os.RemoveAll(k.dir)
}

func (k *kernel) closeChannels() {
	if k.shell != nil {
		k.shell.Close()
	}
	if k.iopub != nil {
		k.iopub.Close()
	}
}

// alive reports whether the kernel process still runs.
func (k *kernel) alive() bool {
	select {
	case <-k.dead:
		return false
	default:
		return true
	}
}

// deathError says how the kernel ended. Call it once k.dead is closed.
func (k *kernel) deathError() error { return processDeath(k.exitErr) }

// kernelDiedError is the error of anything that needed a kernel that died.
type kernelDiedError struct{ how string }

func (e *kernelDiedError) Error() string { return "the kernel " + e.how }

// A waiter holds the messages routed to one request until they are
// consumed. Its queue holds at most limit bytes of message content; past
// that, push drops output messages (stream, display_data, execute_result)
// and counts what it dropped, but always keeps the ones that say how the
// request ends (status, error, replies).
type waiter struct {
	ids []string // the msg_ids routed here; guarded by kernel.mu

	mu      sync.Mutex
	queue   []*message
	bytes   int // content bytes taken in (queued or consumed)
	limit   int
	dropped int // content bytes dropped over the limit
	notify  chan struct{}
}

func newWaiter(limit int) *waiter {
	return &waiter{limit: limit, notify: make(chan struct{}, 1)}
}

func (w *waiter) push(m *message) {
	w.mu.Lock()
	switch m.Header.MsgType {
	case "stream", "display_data", "execute_result", "update_display_data":
		if w.bytes+len(m.Content) > w.limit {
			w.dropped += len(m.Content)
			w.mu.Unlock()
			return
		}
	}
	w.bytes += len(m.Content)
	w.queue = append(w.queue, m)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// empty reports whether no message is waiting to be consumed.
func (w *waiter) empty() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue) == 0
}

// droppedBytes is how much output push dropped so far.
func (w *waiter) droppedBytes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

var errWaitTimeout = errors.New("timed out")

// next returns the next message, or an error when ctx is done, the kernel
// died (and nothing is left in the queue), or timeout fires
// (errWaitTimeout).
func (w *waiter) next(ctx context.Context, dead <-chan struct{}, timeout <-chan time.Time) (*message, error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			m := w.queue[0]
			w.queue[0] = nil
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return m, nil
		}
		w.mu.Unlock()
		select {
		case <-w.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, errWaitTimeout
		case <-dead:
			// The reader may still hand over what the kernel wrote last.
			select {
			case <-w.notify:
				continue
			case <-time.After(50 * time.Millisecond):
			}
			w.mu.Lock()
			n := len(w.queue)
			w.mu.Unlock()
			if n > 0 {
				continue
			}
			return nil, io.EOF
		}
	}
}
