package cli

import (
	"flag"
	"fmt"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/wire"
)

// teamLimitFlags adds the quota flags of `sbx team create|set` to fs.
func teamLimitFlags(fs *flag.FlagSet) (sandboxes *int64, cpus *float64, memory *int64) {
	sandboxes = fs.Int64("max-sandboxes", 0, "most running sandboxes the team may have (0: no limit)")
	cpus = fs.Float64("max-cpus", 0, "most vCPUs the team's running sandboxes may have together (0: no limit)")
	memory = fs.Int64("max-memory-mb", 0, "most memory in MiB the team's running sandboxes may have together (0: no limit)")
	return sandboxes, cpus, memory
}

// runTeam implements `sbx team create|ls|set|rm` (admin keys of the
// default team).
func runTeam(e *env, args []string) int {
	fs := e.flags("team")
	if len(args) == 0 {
		return e.usageErr(fs, "want create, ls, set or rm")
	}
	sub := args[0]
	switch sub {
	case "create":
		sandboxes, cpus, memory := teamLimitFlags(fs)
		asJSON := fs.Bool("json", false, "print the team as JSON")
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 1 {
			return e.usageErr(fs, "want one team name")
		}
		c, err := e.client()
		if err != nil {
			return e.fail("team create", err)
		}
		t, err := c.CreateTeam(e.ctx, pos[0], client.TeamLimits{MaxSandboxes: *sandboxes, MaxCPUs: *cpus, MaxMemoryMB: *memory})
		if err != nil {
			return e.fail("team create", err)
		}
		if *asJSON {
			return e.printJSON(t)
		}
		fmt.Fprintln(e.stdout, t.ID)
		return exitOK
	case "ls", "list":
		asJSON := fs.Bool("json", false, "print the teams as JSON")
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 0 {
			return e.usageErr(fs, "unexpected argument %q", pos[0])
		}
		c, err := e.client()
		if err != nil {
			return e.fail("team ls", err)
		}
		teams, err := c.ListTeams(e.ctx)
		if err != nil {
			return e.fail("team ls", err)
		}
		if *asJSON {
			return e.printJSON(teams)
		}
		tw := e.table()
		fmt.Fprintln(tw, "ID\tNAME\tMAX SANDBOXES\tMAX CPUS\tMAX MEMORY MB")
		for _, t := range teams {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, limit(float64(t.MaxSandboxes)), limit(t.MaxCPUs), limit(float64(t.MaxMemoryMB)))
		}
		tw.Flush()
		return exitOK
	case "set":
		sandboxes, cpus, memory := teamLimitFlags(fs)
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 1 {
			return e.usageErr(fs, "want one team id or name")
		}
		var u wire.TeamUpdate
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "max-sandboxes":
				u.MaxSandboxes = sandboxes
			case "max-cpus":
				u.MaxCPUs = cpus
			case "max-memory-mb":
				u.MaxMemoryMB = memory
			}
		})
		if u == (wire.TeamUpdate{}) {
			return e.usageErr(fs, "nothing to set: give --max-sandboxes, --max-cpus or --max-memory-mb")
		}
		c, err := e.client()
		if err != nil {
			return e.fail("team set", err)
		}
		if _, err := c.SetTeam(e.ctx, pos[0], u); err != nil {
			return e.fail("team set", err)
		}
		return exitOK
	case "rm", "delete":
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) == 0 {
			return e.usageErr(fs, "no team id or name")
		}
		return e.forEach("team rm", pos, false, func(c *client.Client, id string) error {
			return c.DeleteTeam(e.ctx, id)
		})
	case "-h", "-help", "--help":
		fs.Usage()
		return exitOK
	}
	return e.usageErr(fs, "unknown subcommand %q: want create, ls, set or rm", sub)
}

// limit shows a quota: "-" for none.
func limit(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprint(v)
}
