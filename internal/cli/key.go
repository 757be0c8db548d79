package cli

import (
	"fmt"

	"github.com/sbxdev/sbx/client"
)

// runKey implements `sbx key create|ls|rm`.
func runKey(e *env, args []string) int {
	fs := e.flags("key")
	if len(args) == 0 {
		return e.usageErr(fs, "want create, ls or rm")
	}
	sub := args[0]
	switch sub {
	case "create":
		name := fs.String("name", "", "a name to recognise the key by")
		team := fs.String("team", "", "the id or name of the key's team (default: the default team)")
		role := fs.String("role", "member", "the key's role in its team: admin or member")
		asJSON := fs.Bool("json", false, "print the key as JSON")
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 0 {
			return e.usageErr(fs, "unexpected argument %q", pos[0])
		}
		if *role != "admin" && *role != "member" {
			return e.usageErr(fs, "--role must be admin or member")
		}
		c, err := e.client()
		if err != nil {
			return e.fail("key create", err)
		}
		k, err := c.CreateTeamKey(e.ctx, client.KeyOptions{Name: *name, Team: *team, Admin: *role == "admin"})
		if err != nil {
			return e.fail("key create", err)
		}
		fmt.Fprintf(e.stderr, "Created key %s; store it now, it is not shown again.\n", k.ID)
		if *asJSON {
			return e.printJSON(k)
		}
		fmt.Fprintln(e.stdout, k.Key)
		return exitOK
	case "ls", "list":
		asJSON := fs.Bool("json", false, "print the keys as JSON")
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 0 {
			return e.usageErr(fs, "unexpected argument %q", pos[0])
		}
		c, err := e.client()
		if err != nil {
			return e.fail("key ls", err)
		}
		keys, err := c.ListKeys(e.ctx)
		if err != nil {
			return e.fail("key ls", err)
		}
		if *asJSON {
			return e.printJSON(keys)
		}
		now := e.now()
		tw := e.table()
		fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tADMIN\tCREATED")
		for _, k := range keys {
			name := k.Name
			if name == "" {
				name = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", k.ID, name, k.Prefix, k.Admin, ago(now, k.CreatedAt))
		}
		tw.Flush()
		return exitOK
	case "rm", "delete":
		pos, code, ok := e.parse(fs, args[1:])
		if !ok {
			return code
		}
		if len(pos) == 0 {
			return e.usageErr(fs, "no key ID")
		}
		return e.forEach("key rm", pos, false, func(c *client.Client, id string) error {
			return c.DeleteKey(e.ctx, id)
		})
	case "-h", "-help", "--help":
		fs.Usage()
		return exitOK
	}
	return e.usageErr(fs, "unknown subcommand %q: want create, ls or rm", sub)
}
