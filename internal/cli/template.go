package cli

import (
	"fmt"
	"strings"
)

// runTemplate implements `sbx template ls` and `sbx template rm NAME`.
func runTemplate(e *env, args []string) int {
	fs := e.flags("template")
	if len(args) == 0 {
		return e.usageErr(fs, "want ls or rm")
	}
	switch args[0] {
	case "ls", "list":
		asJSON := fs.Bool("json", false, "print the templates as JSON")
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 0 {
			return e.usageErr(fs, "unexpected argument %q", pos[0])
		}
		c, err := e.client()
		if err != nil {
			return e.fail("template ls", err)
		}
		ts, err := c.ListTemplates(e.ctx)
		if err != nil {
			return e.fail("template ls", err)
		}
		if *asJSON {
			return e.printJSON(ts)
		}
		now := e.now()
		tw := e.table()
		fmt.Fprintln(tw, "TEMPLATE\tALIASES\tCPU\tMEMORY\tSIZE\tSTATUS\tCREATED")
		for _, t := range ts {
			aliases := strings.Join(t.Aliases, ",")
			if aliases == "" {
				aliases = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%dM\t%s\t%s\t%s\n", t.TemplateID, aliases, t.CPUCount, t.MemoryMB, bytesHuman(t.SizeBytes), t.BuildStatus, ago(now, t.CreatedAt))
		}
		tw.Flush()
		return exitOK
	case "rm", "delete":
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) == 0 {
			return e.usageErr(fs, "no template name")
		}
		c, err := e.client()
		if err != nil {
			return e.fail("template rm", err)
		}
		status := exitOK
		for _, name := range pos {
			if err := c.DeleteTemplate(e.ctx, name); err != nil {
				status = e.failOn("template rm", name, err)
			}
		}
		return status
	case "-h", "-help", "--help":
		fs.Usage()
		return exitOK
	}
	return e.usageErr(fs, "unknown subcommand %q: want ls or rm", args[0])
}

// bytesHuman renders a size with a binary unit: "512B", "1.5M", "2.0G".
func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%c", float64(n)/float64(div), "KMGTPE"[exp])
}
