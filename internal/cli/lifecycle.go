package cli

import (
	"flag"
	"fmt"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/units"
)

// runPause implements `sbx pause [--files-only] ID...`.
func runPause(e *env, args []string) int {
	fs := e.flags("pause")
	filesOnly := fs.Bool("files-only", false, "stop the sandbox keeping only its files (resume starts fresh processes)")
	ids, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(ids) == 0 {
		return e.usageErr(fs, "no sandbox ID")
	}
	return e.forEach("pause", ids, true, func(c *client.Client, id string) error {
		return c.Pause(e.ctx, id, &client.PauseOptions{FilesOnly: *filesOnly})
	})
}

// runResume implements `sbx resume [--timeout D] [--reboot] ID...`.
func runResume(e *env, args []string) int {
	fs := e.flags("resume")
	timeout := fs.String("timeout", "", "how long the resumed sandbox lives, such as 10m; 0 for no limit (default: the server's)")
	reboot := fs.Bool("reboot", false, "ignore a saved memory image and start the sandbox afresh over its files")
	ids, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(ids) == 0 {
		return e.usageErr(fs, "no sandbox ID")
	}
	opts := &client.ResumeOptions{Reboot: *reboot}
	if *timeout != "" {
		d, err := parseTimeout(*timeout)
		if err != nil {
			return e.usageErr(fs, "%v", err)
		}
		opts.Timeout = d
	}
	return e.forEach("resume", ids, true, func(c *client.Client, id string) error {
		_, err := c.Resume(e.ctx, id, opts)
		return err
	})
}

// runSnapshot implements `sbx snapshot create ID [--name N] [--json]`,
// `sbx snapshot ls [--sandbox ID] [--json]` and `sbx snapshot rm ID...`.
func runSnapshot(e *env, args []string) int {
	fs := e.flags("snapshot")
	if len(args) == 0 {
		return e.usageErr(fs, "want create, ls or rm")
	}
	switch args[0] {
	case "create":
		name := fs.String("name", "", "a name for the snapshot, usable instead of its ID")
		asJSON := fs.Bool("json", false, "print the snapshot as JSON")
		id, code, ok := e.parseOne(fs, args[1:])
		if !ok {
			return code
		}
		c, err := e.client()
		if err != nil {
			return e.fail("snapshot create", err)
		}
		sn, err := c.CreateSnapshot(e.ctx, id, *name)
		if err != nil {
			return e.fail("snapshot create", err)
		}
		if *asJSON {
			return e.printJSON(sn)
		}
		fmt.Fprintln(e.stdout, sn.SnapshotID)
		return exitOK
	case "ls", "list":
		sandbox := fs.String("sandbox", "", "only the snapshots of sandbox `ID`")
		asJSON := fs.Bool("json", false, "print the snapshots as JSON")
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 0 {
			return e.usageErr(fs, "unexpected argument %q", pos[0])
		}
		c, err := e.client()
		if err != nil {
			return e.fail("snapshot ls", err)
		}
		list, err := c.ListSnapshots(e.ctx, *sandbox)
		if err != nil {
			return e.fail("snapshot ls", err)
		}
		if *asJSON {
			return e.printJSON(list)
		}
		now := e.now()
		tw := e.table()
		fmt.Fprintln(tw, "SNAPSHOT\tNAME\tSANDBOX\tKIND\tSIZE\tCREATED")
		for _, sn := range list {
			name := "-"
			if len(sn.Names) > 0 && sn.Names[0] != sn.SnapshotID {
				name = sn.Names[0]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sn.SnapshotID, name, sn.SandboxID, sn.Kind, units.Bytes(sn.SizeBytes, units.Short), ago(now, sn.CreatedAt))
		}
		tw.Flush()
		return exitOK
	case "rm", "delete":
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) == 0 {
			return e.usageErr(fs, "no snapshot ID")
		}
		return e.forEach("snapshot rm", pos, false, func(c *client.Client, id string) error {
			return c.DeleteSnapshot(e.ctx, id)
		})
	case "-h", "-help", "--help":
		fs.Usage()
		return exitOK
	}
	return e.usageErr(fs, "unknown subcommand %q: want create, ls or rm", args[0])
}

// runFork implements `sbx fork [-n N] [--timeout D] [--json] ID`: it prints
// the copies' IDs, one a line, and fails if any copy failed.
func runFork(e *env, args []string) int {
	fs := e.flags("fork")
	n := fs.Int("n", 1, "number of copies")
	timeout := fs.String("timeout", "", "how long each copy lives, such as 10m; 0 for no limit (default: the server's)")
	asJSON := fs.Bool("json", false, "print the copies as JSON")
	id, code, ok := e.parseOne(fs, args)
	if !ok {
		return code
	}
	var d time.Duration // the server's default
	if *timeout != "" {
		var err error
		if d, err = parseTimeout(*timeout); err != nil {
			return e.usageErr(fs, "%v", err)
		}
	}
	c, err := e.client()
	if err != nil {
		return e.fail("fork", err)
	}
	res, err := c.Fork(e.ctx, id, *n, d)
	if err != nil {
		return e.fail("fork", err)
	}
	status := exitOK
	var out []*client.Sandbox
	for i, r := range res {
		if r.Err != nil {
			status = e.failOn("fork", fmt.Sprintf("copy %d", i+1), r.Err)
			continue
		}
		out = append(out, r.Sandbox)
	}
	if *asJSON {
		if s := e.printJSON(out); s != exitOK {
			return s
		}
		return status
	}
	for _, sb := range out {
		fmt.Fprintln(e.stdout, sb.ID)
	}
	return status
}

// lifecycleFlags adds create's lifecycle flags to fs.
func lifecycleFlags(fs *flag.FlagSet) func() (client.Lifecycle, error) {
	lc := fs.String("lifecycle", "ephemeral", "ephemeral (everything goes on kill or timeout) or persistent (files kept across stops; a timeout pauses)")
	autoPause := fs.Bool("auto-pause", false, "pause instead of kill when the timeout is reached")
	autoResume := fs.Bool("auto-resume", false, "resume a paused sandbox on the next request for it")
	idle := fs.String("idle-pause", "", "pause after this long without requests, such as 10m (resumed by the next request)")
	return func() (client.Lifecycle, error) {
		l := client.Lifecycle{AutoPause: *autoPause, AutoResume: *autoResume}
		switch *lc {
		case "ephemeral":
		case "persistent":
			l.Persistent = true
		default:
			return l, fmt.Errorf("--lifecycle must be ephemeral or persistent")
		}
		if *idle != "" {
			d, err := parseTimeout(*idle)
			if err != nil || d <= 0 {
				return l, fmt.Errorf("--idle-pause: want a duration such as 10m")
			}
			l.IdlePause = d
		}
		return l, nil
	}
}
