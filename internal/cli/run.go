package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/sbxdev/sbx/client"
)

// runRun implements `sbx run -- CMD [ARGS...]`: create a sandbox, run the
// command in it, and kill the sandbox whatever happens.
func runRun(e *env, args []string) int {
	fs := e.flags("run")
	tmpl := fs.String("template", "base", "template ID or alias")
	timeout := fs.String("timeout", "", "sandbox lifetime, such as 10m; 0 for no limit (default: the server's)")
	rt := fs.String("runtime", "", "isolation `RUNTIME`: runc or runsc (gVisor) (default: the server's)")
	user := fs.String("user", "", "run as `USER` (default: the template's user)")
	cwd := fs.String("cwd", "", "working `DIR`")
	envs := kvFlag{}
	fs.Var(envs, "env", "environment variable `K=V` (repeatable)")
	interactive := fs.Bool("i", false, "forward standard input to the command (closed at EOF)")
	tty := fs.Bool("t", false, "run the command on a pseudo-terminal")
	noLogin := fs.Bool("no-login", false, "run CMD directly instead of through a bash login shell")
	rest, code, ok := e.parseHead(fs, args)
	if !ok {
		return code
	}
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return e.usageErr(fs, "no command")
	}
	opts := client.CreateOptions{Template: *tmpl, Runtime: *rt}
	if *timeout != "" {
		d, err := parseTimeout(*timeout)
		if err != nil {
			return e.usageErr(fs, "%v", err)
		}
		opts.Timeout = d
	}
	c, err := e.client()
	if err != nil {
		return e.fail("run", err)
	}
	// Creation is not cancelled by an interrupt: a sandbox the server made
	// after the client gave up would be left running. It is killed below.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(e.ctx), 2*time.Minute)
	sb, err := c.CreateSandbox(cctx, opts)
	cancel()
	if err != nil {
		return e.fail("run", err)
	}
	defer func() {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(e.ctx), 30*time.Second)
		defer cancel()
		if err := sb.Kill(kctx); err != nil && !client.IsNotFound(err) {
			fmt.Fprintf(e.stderr, "sbx run: kill sandbox %s: %v\n", sb.ID, err)
		}
	}()
	if e.ctx.Err() != nil {
		return exitInterrupted
	}
	pop := commandOptions(rest, *noLogin)
	pop.User, pop.Cwd, pop.Env = *user, *cwd, envs.orNil()
	return e.runProcess("run", sb, pop, *interactive, *tty)
}
