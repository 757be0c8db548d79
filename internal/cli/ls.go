package cli

import (
	"fmt"

	"github.com/sbxdev/sbx/client"
)

// runLs implements `sbx ls`: a table of sandboxes, or []client.SandboxInfo
// with --json.
func runLs(e *env, args []string) int {
	fs := e.flags("ls")
	meta := kvFlag{}
	var states listFlag
	fs.Var(meta, "meta", "keep sandboxes with metadata `K=V` (repeatable)")
	fs.Var(&states, "state", "keep sandboxes in `STATE`: running or paused (repeatable; default running)")
	asJSON := fs.Bool("json", false, "print the sandboxes as JSON")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return e.usageErr(fs, "unexpected argument %q", pos[0])
	}
	for _, s := range states {
		if s != client.StateRunning && s != client.StatePaused {
			return e.usageErr(fs, "--state %q: want running or paused", s)
		}
	}
	c, err := e.client()
	if err != nil {
		return e.fail("ls", err)
	}
	sbs, err := c.ListSandboxes(e.ctx, &client.ListOptions{Metadata: meta.orNil(), States: states})
	if err != nil {
		return e.fail("ls", err)
	}
	if *asJSON {
		return e.printJSON(sbs)
	}
	now := e.now()
	tw := e.table()
	fmt.Fprintln(tw, "ID\tTEMPLATE\tRUNTIME\tSTATE\tSTARTED\tENDS")
	for _, s := range sbs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.SandboxID, s.TemplateID, s.Runtime, s.State, ago(now, s.StartedAt), until(now, s.EndAt))
	}
	tw.Flush()
	return exitOK
}
