package cli

import "fmt"

// runHelp implements `sbx help [COMMAND]`, writing to stdout.
func runHelp(e *env, args []string) int {
	if len(args) == 0 {
		e.usage(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] && c.name != "help" && c.name != "serve" {
			e.stderr = e.stdout // the flag set prints usage to stderr
			return c.run(e, []string{"-h"})
		}
	}
	if args[0] == "serve" {
		return runServe(e.ctx, []string{"-h"})
	}
	if args[0] == "help" {
		e.usage(e.stdout)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "sbx help: unknown command %q\n", args[0])
	return exitUsage
}
