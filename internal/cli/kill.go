package cli

import "github.com/sbxdev/sbx/client"

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
	return e.forEach("kill", ids, true, func(c *client.Client, id string) error {
		return c.KillSandbox(e.ctx, id)
	})
}
