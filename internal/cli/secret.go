package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sbxdev/sbx/client"
)

// runSecret implements `sbx secret create|ls|rm`. A value is read from
// standard input (or --from-file), never from the command line, where
// other users of the host could read it in the process list.
func runSecret(e *env, args []string) int {
	fset := e.flags("secret")
	if len(args) == 0 {
		return e.usageErr(fset, "want create, ls or rm")
	}
	switch args[0] {
	case "create", "update":
		from := fset.String("from-file", "", "read the value from `FILE` (default: standard input; one trailing newline is dropped)")
		meta := kvFlag{}
		fset.Var(&meta, "meta", "metadata `K=V` (repeatable)")
		asJSON := fset.Bool("json", false, "print the secret as JSON")
		pos, code, ok := e.parse(fset, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 1 {
			return e.usageErr(fset, "want one secret name")
		}
		var raw []byte
		var err error
		if *from != "" {
			raw, err = os.ReadFile(*from)
		} else {
			raw, err = io.ReadAll(io.LimitReader(e.stdin, 1<<20))
		}
		if err != nil {
			return e.fail("secret "+args[0], err)
		}
		value := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
		c, err := e.client()
		if err != nil {
			return e.fail("secret "+args[0], err)
		}
		var s *client.Secret
		if args[0] == "create" {
			s, err = c.CreateSecret(e.ctx, pos[0], value, meta.orNil())
		} else {
			s, err = c.UpdateSecret(e.ctx, pos[0], value, meta.orNil())
		}
		if err != nil {
			return e.failOn("secret "+args[0], pos[0], err)
		}
		if *asJSON {
			return e.printJSON(s)
		}
		fmt.Fprintln(e.stdout, s.SecretID)
		return exitOK
	case "ls", "list":
		asJSON := fset.Bool("json", false, "print the secrets as JSON")
		pos, code, ok := e.parse(fset, args[1:])
		if !ok {
			return code
		}
		if len(pos) != 0 {
			return e.usageErr(fset, "unexpected argument %q", pos[0])
		}
		c, err := e.client()
		if err != nil {
			return e.fail("secret ls", err)
		}
		list, err := c.ListSecrets(e.ctx)
		if err != nil {
			return e.fail("secret ls", err)
		}
		if *asJSON {
			if list == nil {
				list = []client.Secret{}
			}
			return e.printJSON(list)
		}
		tw := e.table()
		fmt.Fprintln(tw, "ID\tNAME\tVERSION\tUPDATED")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.SecretID, s.Name, s.CurrentVersion, s.UpdatedAt.Format("2006-01-02 15:04:05"))
		}
		tw.Flush()
		return exitOK
	case "rm", "delete":
		pos, code, ok := e.parse(fset, args[1:])
		if !ok {
			return code
		}
		if len(pos) == 0 {
			return e.usageErr(fset, "no secret name or ID")
		}
		return e.forEach("secret rm", pos, false, func(c *client.Client, ref string) error {
			return c.DeleteSecret(e.ctx, ref)
		})
	default:
		return e.usageErr(fset, "unknown subcommand %q: want create, update, ls or rm", args[0])
	}
}
