package cli

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/client"
)

// runExec implements `sbx exec ID -- CMD [ARGS...]`.
func runExec(e *env, args []string) int {
	fs := e.flags("exec")
	user := fs.String("user", "", "run as `USER` (default: the template's user; root for root)")
	cwd := fs.String("cwd", "", "working `DIR` (default: the user's home)")
	envs := kvFlag{}
	fs.Var(envs, "env", "environment variable `K=V` (repeatable)")
	interactive := fs.Bool("i", false, "forward standard input to the command (closed at EOF)")
	tty := fs.Bool("t", false, "run the command on a pseudo-terminal (raw mode when stdin is a terminal)")
	noLogin := fs.Bool("no-login", false, "run CMD directly instead of through a bash login shell")
	rest, code, ok := e.parseHead(fs, args)
	if !ok {
		return code
	}
	if len(rest) == 0 {
		return e.usageErr(fs, "no sandbox ID")
	}
	id, rest := rest[0], rest[1:]
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return e.usageErr(fs, "no command")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("exec", err)
	}
	sb, err := attach(e.ctx, c, id)
	if err != nil {
		return e.fail("exec", err)
	}
	opts := commandOptions(rest, *noLogin)
	opts.User, opts.Cwd, opts.Env = *user, *cwd, envs.orNil()
	return e.runProcess("exec", sb, opts, *interactive, *tty)
}

// attach returns a handle on sandbox id, resuming it if it is paused.
func attach(ctx context.Context, c *client.Client, id string) (*client.Sandbox, error) {
	info, err := c.GetSandbox(ctx, id)
	if err != nil {
		return nil, err
	}
	if info.State == client.StatePaused || info.EnvdAccessToken == "" {
		return c.ConnectSandbox(ctx, id, nil)
	}
	return c.Attach(info), nil
}

// commandOptions turns a command line into ExecOptions. By default it runs
// through `bash -l` (as the e2b SDKs run commands) so that the login
// environment and PATH apply, with `exec` so that the exit status and
// signals are the command's own.
func commandOptions(argv []string, noLogin bool) client.ExecOptions {
	if noLogin {
		return client.ExecOptions{Cmd: argv[0], Args: argv[1:]}
	}
	// "sbx" is $0, the name bash gives in its own error messages.
	return client.ExecOptions{Cmd: "/bin/bash", Args: append([]string{"-l", "-c", `exec -- "$@"`, "sbx"}, argv...)}
}

// runProcess runs opts in sb with the CLI's streams and returns the exit code
// for the CLI: the process's, or 130 after an interrupt, which is forwarded
// to the process as SIGTERM.
func (e *env) runProcess(name string, sb *client.Sandbox, opts client.ExecOptions, interactive, tty bool) int {
	if tty {
		return e.runTTY(name, sb, opts)
	}
	if interactive {
		opts.Stdin = e.stdin
	}
	opts.Stdout, opts.Stderr = e.stdout, e.stderr
	p, err := sb.Start(e.ctx, opts)
	if err != nil {
		return e.fail(name, err)
	}
	st, err := p.Wait(e.ctx)
	if e.ctx.Err() != nil {
		return e.interrupted(name, p, client.SIGTERM)
	}
	if err != nil {
		return e.fail(name, err)
	}
	return e.exitCode(name, st)
}

// interrupted forwards an interrupt to p as sig and returns 130.
func (e *env) interrupted(name string, p *client.Process, sig client.Signal) int {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(e.ctx), 5*time.Second)
	defer cancel()
	if err := p.Signal(ctx, sig); err != nil && !client.IsNotFound(err) {
		fmt.Fprintf(e.stderr, "sbx %s: interrupted; signal process %d: %s\n", name, p.PID, strings.TrimPrefix(err.Error(), "sbx: "))
	}
	return exitInterrupted
}

// exitCode maps how a remote process ended to the CLI's exit code: its exit
// status, or 128+N when signal N ended it, as shells do.
func (e *env) exitCode(name string, st client.ExitStatus) int {
	code := exitCodeOf(st)
	// The agent also reports a nonzero exit or a signal as an error
	// ("exit status 3"); only an error with nothing else to show for it is
	// printed.
	if st.Error != "" && code == 0 {
		fmt.Fprintf(e.stderr, "sbx %s: %s\n", name, st.Error)
		code = exitError
	}
	return code
}

func exitCodeOf(st client.ExitStatus) int {
	if sig, ok := strings.CutPrefix(st.Status, "signal: "); ok && !st.Exited {
		sig = strings.TrimSuffix(sig, " (core dumped)")
		for n := 1; n < 65; n++ {
			if syscall.Signal(n).String() == sig {
				return 128 + n
			}
		}
		return exitError
	}
	if st.ExitCode < 0 || st.ExitCode > 255 {
		return exitError
	}
	return st.ExitCode
}
