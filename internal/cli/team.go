package cli

import (
	"flag"
	"fmt"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/wire"
)

// teamFlags are the quota flags of `sbx team create|set`.
type teamFlags struct {
	sandboxes, memory, disk, paused, templates, volumes *int64
	cpus                                                *float64
	timeout                                             *time.Duration
}

// teamLimitFlags adds the quota flags of `sbx team create|set` to fs.
func teamLimitFlags(fs *flag.FlagSet) teamFlags {
	return teamFlags{
		sandboxes: fs.Int64("max-sandboxes", 0, "most running sandboxes the team may have (0: no limit)"),
		cpus:      fs.Float64("max-cpus", 0, "most vCPUs the team's running sandboxes may have together (0: no limit)"),
		memory:    fs.Int64("max-memory-mb", 0, "most memory in MiB the team's running sandboxes may have together (0: no limit)"),
		disk:      fs.Int64("max-disk-mb", 0, "most disk in MiB the team's sandboxes, paused ones included, may have together (0: no limit)"),
		timeout:   fs.Duration("max-timeout", 0, "longest time to live a sandbox of the team may be given, such as 1h (0: no limit)"),
		paused:    fs.Int64("max-paused", 0, "most paused sandboxes the team may keep (0: no limit)"),
		templates: fs.Int64("max-templates", 0, "most snapshots (templates) the team may keep (0: no limit)"),
		volumes:   fs.Int64("max-volume-mb", 0, "most MiB the team's volumes may have together (0: no limit)"),
	}
}

// limits is what the flags say, all of them.
func (f teamFlags) limits() (client.TeamLimits, error) {
	secs, err := timeoutSeconds(*f.timeout)
	return client.TeamLimits{MaxSandboxes: *f.sandboxes, MaxCPUs: *f.cpus, MaxMemoryMB: *f.memory, MaxDiskMB: *f.disk,
		MaxTimeoutSeconds: secs, MaxPaused: *f.paused, MaxTemplates: *f.templates, MaxVolumeMB: *f.volumes}, err
}

// update is what the flags given on the command line say.
func (f teamFlags) update(fs *flag.FlagSet) (wire.TeamUpdate, error) {
	var u wire.TeamUpdate
	var err error
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "max-sandboxes":
			u.MaxSandboxes = f.sandboxes
		case "max-cpus":
			u.MaxCPUs = f.cpus
		case "max-memory-mb":
			u.MaxMemoryMB = f.memory
		case "max-disk-mb":
			u.MaxDiskMB = f.disk
		case "max-timeout":
			var secs int64
			secs, err = timeoutSeconds(*f.timeout)
			u.MaxTimeoutSeconds = &secs
		case "max-paused":
			u.MaxPaused = f.paused
		case "max-templates":
			u.MaxTemplates = f.templates
		case "max-volume-mb":
			u.MaxVolumeMB = f.volumes
		}
	})
	return u, err
}

// timeoutSeconds is d in whole seconds.
func timeoutSeconds(d time.Duration) (int64, error) {
	if d < 0 || d%time.Second != 0 {
		return 0, fmt.Errorf("--max-timeout %s: want a whole number of seconds, 0 or more", d)
	}
	return int64(d / time.Second), nil
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
		lf := teamLimitFlags(fs)
		asJSON := fs.Bool("json", false, "print the team as JSON")
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 1 {
			return e.usageErr(fs, "want one team name")
		}
		limits, err := lf.limits()
		if err != nil {
			return e.usageErr(fs, "%v", err)
		}
		c, err := e.client()
		if err != nil {
			return e.fail("team create", err)
		}
		t, err := c.CreateTeam(e.ctx, pos[0], limits)
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
		fmt.Fprintln(tw, "ID\tNAME\tMAX SANDBOXES\tMAX CPUS\tMAX MEMORY MB\tMAX DISK MB\tMAX TIMEOUT\tMAX PAUSED\tMAX TEMPLATES\tMAX VOLUME MB")
		for _, t := range teams {
			timeout := "-"
			if t.MaxTimeoutSeconds > 0 {
				timeout = (time.Duration(t.MaxTimeoutSeconds) * time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, limit(float64(t.MaxSandboxes)), limit(t.MaxCPUs),
				limit(float64(t.MaxMemoryMB)), limit(float64(t.MaxDiskMB)), timeout, limit(float64(t.MaxPaused)),
				limit(float64(t.MaxTemplates)), limit(float64(t.MaxVolumeMB)))
		}
		tw.Flush()
		return exitOK
	case "set":
		lf := teamLimitFlags(fs)
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 1 {
			return e.usageErr(fs, "want one team id or name")
		}
		u, err := lf.update(fs)
		if err != nil {
			return e.usageErr(fs, "%v", err)
		}
		if u == (wire.TeamUpdate{}) {
			return e.usageErr(fs, "nothing to set: give one of the --max-… flags")
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
