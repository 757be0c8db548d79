package cli

import "fmt"

// runNode implements `sbx node ls|rm|drain|ready`.
func runNode(e *env, args []string) int {
	fs := e.flags("node")
	if len(args) == 0 {
		return e.usageErr(fs, "want ls, rm, drain or ready")
	}
	switch args[0] {
	case "ls", "list":
	case "rm":
		return runNodeRm(e, args[1:])
	case "drain", "ready":
		return runNodeStatus(e, args[0], args[1:])
	default:
		return e.usageErr(fs, "unknown subcommand %q: want ls, rm, drain or ready", args[0])
	}
	asJSON := fs.Bool("json", false, "print the nodes as JSON")
	pos, code, ok := e.parse(fs, args[1:])
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return e.usageErr(fs, "unexpected argument %q", pos[0])
	}
	c, err := e.client()
	if err != nil {
		return e.fail("node ls", err)
	}
	nodes, err := c.ListNodes(e.ctx)
	if err != nil {
		return e.fail("node ls", err)
	}
	if *asJSON {
		return e.printJSON(nodes)
	}
	now := e.now()
	tw := e.table()
	fmt.Fprintln(tw, "ID\tSTATUS\tSINCE\tSANDBOXES\tCPUS\tMEMORY\tLOAD\tVERSION")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d (+%d starting)\t%d/%d\t%d/%d MiB\t%d%% cpu, %d MiB used\t%s\n",
			n.ID, n.Status, ago(now, n.StatusChangedAt), n.Sandboxes, n.Starting, n.AllocatedCPUs, n.CPUs,
			n.AllocatedMemoryBytes>>20, n.MemoryBytes>>20, n.CPUPercent, n.MemoryUsedBytes>>20, n.Version)
	}
	tw.Flush()
	return exitOK
}

// runNodeRm implements `sbx node rm NAME...`: removes the records of
// nodes that are not live and hold no unsettled sandbox.
func runNodeRm(e *env, args []string) int {
	fs := e.flags("node rm")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return e.usageErr(fs, "want a node name")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("node rm", err)
	}
	for _, name := range pos {
		if err := c.RemoveNode(e.ctx, name); err != nil {
			return e.fail("node rm "+name, err)
		}
		fmt.Fprintf(e.stderr, "removed node %s\n", name)
	}
	return exitOK
}

// runNodeStatus implements `sbx node drain NAME` (waits for the drain and
// prints what became of each sandbox) and `sbx node ready NAME`.
func runNodeStatus(e *env, verb string, args []string) int {
	fs := e.flags("node " + verb)
	asJSON := fs.Bool("json", false, "print the drain's result as JSON")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return e.usageErr(fs, "want one node name")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("node "+verb, err)
	}
	if verb == "ready" {
		if err := c.SetNodeStatus(e.ctx, pos[0], "ready"); err != nil {
			return e.fail("node ready", err)
		}
		return exitOK
	}
	res, err := c.DrainNode(e.ctx, pos[0])
	if err != nil {
		return e.fail("node drain", err)
	}
	if *asJSON {
		return e.printJSON(res)
	}
	tw := e.table()
	fmt.Fprintln(tw, "SANDBOX\tOUTCOME\tDETAIL")
	for _, m := range res.Moved {
		fmt.Fprintf(tw, "%s\tmoved\tto %s, %s\n", m.SandboxID, m.Node, m.State)
	}
	for _, m := range res.Failed {
		fmt.Fprintf(tw, "%s\tnot moved\t%s\n", m.SandboxID, m.Error)
	}
	for _, m := range res.Remaining {
		end := "no timeout"
		if m.EndAt != nil {
			end = "ends " + m.EndAt.Format("2006-01-02 15:04:05Z07:00")
		}
		fmt.Fprintf(tw, "%s\tleft to finish\t%s\n", m.SandboxID, end)
	}
	tw.Flush()
	if len(res.Failed) > 0 {
		return exitError
	}
	return exitOK
}
