package cli

import "fmt"

// runKill implements `sbx kill ID...`. It tries every ID and fails if any
// could not be killed.
func runKill(e *env, args []string) int {
	fs := e.flags("kill")
	ids, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(ids) == 0 {
		return e.usageErr(fs, "no sandbox ID")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("kill", err)
	}
	status := exitOK
	for _, id := range ids {
		if err := c.KillSandbox(e.ctx, id); err != nil {
			status = e.failOn("kill", id, err)
			continue
		}
		fmt.Fprintln(e.stdout, id)
	}
	return status
}
