package interp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"
)

// bashKernel is a bash context: one bash process that runs every cell of
// the context, so that variables, functions, the working directory and
// exported variables carry from cell to cell. Debian has no Jupyter
// kernel for bash (bash_kernel is not packaged), and needs none: each cell
// is written to a file and sourced by the shell from its stdin, its stdin
// being /dev/null so that a cell reading input cannot take the next one.
// After a cell the shell writes an end marker to its stdout (with the
// cell's exit status) and one to its stderr; the readers cut the streams
// there, so that every byte a cell wrote arrives before its end. A cell
// that ends with a non-zero status fails with an error naming it. The
// marker holds a token made when the kernel starts, which no cell knows.
//
// SIGINT (an interrupt) goes to the shell's process group: the command
// running stops, the shell's trap keeps the shell alive, and the cell runs
// on to its end. A cell that exits the shell (`exit`) ends the kernel:
// the context must be restarted.
type bashKernel struct {
	log   *slog.Logger
	cmd   *exec.Cmd
	dir   string
	stdin *os.File
	// marker starts each end marker: "\x1e" token ":".
	marker []byte

	dead    chan struct{}
	exitErr error

	mu    sync.Mutex
	cur   *bashCell
	count int
	wmu   sync.Mutex // serialises writes to stdin
}

// bashCell is the cell running: its id, who waits for it, and what of its
// end was seen.
type bashCell struct {
	id        string
	w         *waiter
	status    string // the stdout marker's exit status; "" until seen
	outDone   bool
	errDone   bool
	finalised bool
}

// bashInit runs once in the shell before any cell. The INT trap keeps a
// non-interactive shell alive when an interrupt stops a cell's command (a
// trap with a command, unlike an ignored signal, is reset in the
// commands it runs, so they can be interrupted).
const bashInit = "trap ':' INT\n"

// startBash starts bash (cfg.Argv) for a bash context.
func startBash(ctx context.Context, cfg kernelConfig, log *slog.Logger) (*bashKernel, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kernel did not start: %w", err)
	}
	dir, err := os.MkdirTemp("", "sbx-bash-")
	if err != nil {
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
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	// Pipes of its own rather than exec's: the kernel is dead when bash
	// exits, even while a background job it started holds its output
	// open; the readers read on to the end of what is written.
	cmd := exec.Command(cfg.Argv[0], cfg.Argv[1:]...)
	cmd.Dir, cmd.Env = cfg.Cwd, cfg.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start kernel %s: %w", cfg.Argv[0], err)
	}
	k := &bashKernel{log: log, cmd: cmd, dir: dir, stdin: inW, marker: []byte("\x1e" + newID() + ":"), dead: make(chan struct{})}
	go func() { defer outR.Close(); k.read(outR, "stdout") }()
	go func() { defer errR.Close(); k.read(errR, "stderr") }()
	go func() {
		k.exitErr = cmd.Wait()
		close(k.dead)
	}()
	if _, err := inW.WriteString(bashInit); err != nil {
		k.kill()
		return nil, k.deathError()
	}
	return k, nil
}

// read cuts stream name at the end markers and delivers what comes before
// each to the cell running.
func (k *bashKernel) read(r io.Reader, name string) {
	buf := make([]byte, 32<<10)
	var pending []byte
	for {
		n, err := r.Read(buf)
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.Index(pending, k.marker)
			if i < 0 {
				break
			}
			nl := bytes.IndexByte(pending[i+len(k.marker):], '\n')
			if nl < 0 {
				break // the marker's rest comes with the next read
			}
			k.output(name, pending[:i])
			k.ended(name, string(pending[i+len(k.marker):i+len(k.marker)+nl]))
			pending = pending[i+len(k.marker)+nl+1:]
		}
		// Keep back what may begin a marker or end in the middle of a
		// character; send the rest.
		keep := markerPrefix(pending, k.marker)
		if keep == 0 {
			keep = partialRune(pending)
		}
		if err != nil {
			keep = 0
		}
		k.output(name, pending[:len(pending)-keep])
		pending = append(pending[:0], pending[len(pending)-keep:]...)
		if err != nil {
			return
		}
	}
}

// markerPrefix is the length of the longest end of b that begins marker.
func markerPrefix(b, marker []byte) int {
	for n := min(len(b), len(marker)-1); n > 0; n-- {
		if bytes.Equal(b[len(b)-n:], marker[:n]) {
			return n
		}
	}
	return 0
}

// partialRune is the length of an incomplete UTF-8 sequence ending b.
func partialRune(b []byte) int {
	for n := 1; n <= 3 && n <= len(b); n++ {
		c := b[len(b)-n]
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-n:]) {
				return n
			}
			return 0
		}
	}
	return 0
}

// output sends text of stream name to the cell running; output with no
// cell (a background job's) goes to the log.
func (k *bashKernel) output(name string, text []byte) {
	if len(text) == 0 {
		return
	}
	k.mu.Lock()
	c := k.cur
	k.mu.Unlock()
	if c == nil {
		k.log.Debug("bash output outside a cell", "stream", name, "bytes", len(text))
		return
	}
	c.w.push(bashMessage(c.id, "stream", map[string]any{"name": name, "text": string(text)}))
}

// ended records that stream name reached the running cell's end marker;
// once both did, the cell ends.
func (k *bashKernel) ended(name, status string) {
	k.mu.Lock()
	c := k.cur
	if c == nil {
		k.mu.Unlock()
		return
	}
	if name == "stdout" {
		c.outDone, c.status = true, status
	} else {
		c.errDone = true
	}
	if !c.outDone || !c.errDone || c.finalised {
		k.mu.Unlock()
		return
	}
	c.finalised = true
	k.cur = nil
	k.mu.Unlock()
	if c.status != "0" {
		c.w.push(bashMessage(c.id, "error", map[string]any{
			"ename": "ExitStatus", "evalue": "exit status " + c.status,
			"traceback": []string{"the cell's last command exited with status " + c.status}}))
	}
	c.w.push(bashMessage(c.id, "status", map[string]any{"execution_state": "idle"}))
}

// bashMessage is an iopub message of type typ for cell parent, as a kernel
// of the server's own (bash, or a TypeScript cell that does not parse)
// makes it.
func bashMessage(parent, typ string, content map[string]any) *message {
	b, _ := json.Marshal(content)
	m := &message{channel: "iopub", Content: b}
	m.Header.MsgType = typ
	m.Parent.MsgID = parent
	return m
}

// shellQuote quotes s for bash.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// validEnvName reports whether s can be a shell variable's name.
func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (k *bashKernel) startCell(_ context.Context, code string, env map[string]string, w *waiter) (string, func(), error) {
	id := newID()
	file := filepath.Join(k.dir, "cell-"+id+".sh")
	if err := os.WriteFile(file, []byte(code), 0o600); err != nil {
		return "", nil, fmt.Errorf("write the cell: %w", err)
	}
	names := make([]string, 0, len(env))
	for name := range env {
		if !validEnvName(name) {
			os.Remove(file)
			return "", nil, fmt.Errorf("env var name %q is not valid in bash", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	// The run's variables, exported for its duration; what they were
	// before comes back after (declare -p's output, evaluated at the top
	// level, restores a variable as it was, exported or not).
	var sb strings.Builder
	for i, name := range names {
		fmt.Fprintf(&sb, "__sbx_saved_%d=$(declare -p %s 2>/dev/null); export %s=%s\n", i, name, name, shellQuote(env[name]))
	}
	fmt.Fprintf(&sb, ". %s </dev/null\n__sbx_status=$?\n", shellQuote(file))
	for i, name := range names {
		fmt.Fprintf(&sb, "unset %s; [ -n \"$__sbx_saved_%d\" ] && eval \"$__sbx_saved_%d\"; unset __sbx_saved_%d\n", name, i, i, i)
	}
	fmt.Fprintf(&sb, "rm -f %s\nprintf '%%s%%s\\n' %s \"$__sbx_status\"\nprintf '%%s\\n' %s >&2\nunset __sbx_status\n",
		shellQuote(file), shellQuote(string(k.marker)), shellQuote(string(k.marker)))

	k.mu.Lock()
	k.count++
	count := k.count
	k.cur = &bashCell{id: id, w: w}
	w.ids = append(w.ids, id)
	k.mu.Unlock()
	w.push(bashMessage(id, "status", map[string]any{"execution_state": "busy"}))
	w.push(bashMessage(id, "execute_input", map[string]any{"code": code, "execution_count": count}))
	k.wmu.Lock()
	_, err := k.stdin.WriteString(sb.String())
	k.wmu.Unlock()
	if err != nil {
		if !k.alive() {
			return "", nil, k.deathError()
		}
		return "", nil, fmt.Errorf("send to the kernel: %w", err)
	}
	return id, func() {}, nil
}

func (k *bashKernel) unwait(w *waiter) {
	k.mu.Lock()
	if k.cur != nil && k.cur.w == w {
		k.cur = nil
	}
	k.mu.Unlock()
}

func (k *bashKernel) interrupt() { syscall.Kill(-k.cmd.Process.Pid, syscall.SIGINT) }

func (k *bashKernel) kill() {
	syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	<-k.dead
	k.stdin.Close()
	os.RemoveAll(k.dir)
}

func (k *bashKernel) alive() bool {
	select {
	case <-k.dead:
		return false
	default:
		return true
	}
}

func (k *bashKernel) exited() <-chan struct{} { return k.dead }

func (k *bashKernel) deathError() error { return processDeath(k.exitErr) }
