package cli

import (
	"context"
	"fmt"
	"os"
	"sync"

	"golang.org/x/term"

	"github.com/sbxdev/sbx/client"
)

// runShell implements `sbx shell ID`: an interactive login shell on a
// pseudo-terminal.
func runShell(e *env, args []string) int {
	fs := e.flags("shell")
	user := fs.String("user", "", "log in as `USER` (default: the template's user)")
	cwd := fs.String("cwd", "", "start in `DIR`")
	id, code, ok := e.parseOne(fs, args)
	if !ok {
		return code
	}
	c, err := e.client()
	if err != nil {
		return e.fail("shell", err)
	}
	sb, err := attach(e.ctx, c, id)
	if err != nil {
		return e.fail("shell", err)
	}
	return e.runTTY("shell", sb, client.ExecOptions{Cmd: "/bin/bash", Args: []string{"-i", "-l"}, User: *user, Cwd: *cwd})
}

// runTTY runs opts on a pseudo-terminal sized like the local terminal. When
// stdin is a terminal it is put in raw mode (restored on every way out), so
// that keys such as Ctrl-C reach the remote side; window size changes are
// forwarded. An interrupt that still reaches sbx kills the remote process
// (interactive shells ignore SIGTERM) and exits 130.
func (e *env) runTTY(name string, sb *client.Sandbox, opts client.ExecOptions) int {
	fd := -1
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd = int(f.Fd())
	}
	size := client.PTYSize{Cols: 80, Rows: 24}
	if fd >= 0 {
		if w, h, err := term.GetSize(fd); err == nil && w > 0 && h > 0 {
			size = client.PTYSize{Cols: uint32(w), Rows: uint32(h)}
		}
	}
	if t := e.getenv("TERM"); t != "" {
		env := map[string]string{"TERM": t}
		for k, v := range opts.Env {
			env[k] = v
		}
		opts.Env = env
	}
	opts.PTY = &size
	opts.Stdin = e.stdin
	opts.Stdout = e.stdout
	opts.Stderr = e.stdout

	restore := func() {}
	if fd >= 0 {
		old, err := term.MakeRaw(fd)
		if err != nil {
			return e.fail(name, fmt.Errorf("raw mode: %w", err))
		}
		var once sync.Once
		restore = func() { once.Do(func() { _ = term.Restore(fd, old) }) }
		defer restore()
	}
	p, err := sb.Start(e.ctx, opts)
	if err != nil {
		restore()
		return e.fail(name, err)
	}
	wctx, stop := context.WithCancel(e.ctx)
	defer stop()
	go watchResize(wctx, fd, p)
	st, err := p.Wait(e.ctx)
	restore()
	if e.ctx.Err() != nil {
		return e.interrupted(name, p, client.SIGKILL)
	}
	if err != nil {
		return e.fail(name, err)
	}
	return e.exitCode(name, st)
}
