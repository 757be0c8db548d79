package cli

import "fmt"

// runNode implements `sbx node ls` and `sbx node rm`.
func runNode(e *env, args []string) int {
	fs := e.flags("node")
	if len(args) == 0 {
		return e.usageErr(fs, "want ls or rm")
	}
	if args[0] == "rm" {
		return runNodeRm(e, args[1:])
	}
	if args[0] != "ls" && args[0] != "list" {
		return e.usageErr(fs, "unknown subcommand %q: want ls or rm", args[0])
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
