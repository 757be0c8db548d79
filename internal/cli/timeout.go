package cli

// runTimeout implements `sbx timeout ID DURATION`.
func runTimeout(e *env, args []string) int {
	fs := e.flags("timeout")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 2 {
		return e.usageErr(fs, "want a sandbox ID and a duration")
	}
	d, err := parseTimeout(pos[1])
	if err != nil {
		return e.usageErr(fs, "%v", err)
	}
	c, err := e.client()
	if err != nil {
		return e.fail("timeout", err)
	}
	if err := c.SetTimeout(e.ctx, pos[0], d); err != nil {
		return e.fail("timeout", err)
	}
	return exitOK
}
