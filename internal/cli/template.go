package cli

import (
	"flag"
	"fmt"
	"strings"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/units"
)

// runTemplate implements `sbx template ls`, `sbx template rm NAME`,
// `sbx template import NAME (--image REF [--insecure] | --tar PATH |
// --oci-layout DIR)`, and the tag commands `sbx template tag SOURCE
// TAG...`, `sbx template tags NAME` and `sbx template untag NAME:TAG...`.
func runTemplate(e *env, args []string) int {
	fs := e.flags("template")
	if len(args) == 0 {
		return e.usageErr(fs, "want ls, inspect, rm, import, set, build, tag, tags or untag")
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
			fmt.Fprintf(tw, "%s\t%s\t%d\t%dM\t%s\t%s\t%s\n", t.TemplateID, aliases, t.CPUCount, t.MemoryMB, units.Bytes(t.SizeBytes, units.Short), t.BuildStatus, ago(now, t.CreatedAt))
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
		return e.forEach("template rm", pos, false, func(c *client.Client, name string) error {
			return c.DeleteTemplate(e.ctx, name)
		})
	case "import":
		return runTemplateImport(e, fs, args[1:])
	case "inspect":
		return runTemplateInspect(e, fs, args[1:])
	case "set":
		return runTemplateSet(e, fs, args[1:])
	case "build":
		return runTemplateBuild(e, fs, args[1:])
	case "tag":
		return runTemplateTag(e, fs, args[1:])
	case "tags":
		return runTemplateTags(e, fs, args[1:])
	case "untag":
		return runTemplateUntag(e, fs, args[1:])
	case "-h", "-help", "--help":
		fs.Usage()
		return exitOK
	}
	return e.usageErr(fs, "unknown subcommand %q: want ls, inspect, rm, import, set, build, tag, tags or untag", args[0])
}

// runTemplateImport implements `sbx template import`: the server reads the
// image (paths are on the server's host) and the template is printed.
func runTemplateImport(e *env, fs *flag.FlagSet, args []string) int {
	image := fs.String("image", "", "import image `REF` from its registry")
	insecure := fs.Bool("insecure", false, "with --image: allow a plain-HTTP registry")
	tarPath := fs.String("tar", "", "import the docker-archive (docker save) `PATH` on the server")
	layoutDir := fs.String("oci-layout", "", "import the OCI image layout `DIR` on the server")
	asJSON := fs.Bool("json", false, "print the template as JSON")
	settings := settingsFlags(fs)
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return e.usageErr(fs, "want one template name")
	}
	st, err := settings.get(fs)
	if err != nil {
		return e.usageErr(fs, "%v", err)
	}
	opts := client.ImportOptions{Name: pos[0], Insecure: *insecure, TemplateSettings: st}
	n := 0
	if *image != "" {
		opts.Source, opts.Ref = client.ImportRegistry, *image
		n++
	}
	if *tarPath != "" {
		opts.Source, opts.Path = client.ImportTarball, *tarPath
		n++
	}
	if *layoutDir != "" {
		opts.Source, opts.Path = client.ImportLayout, *layoutDir
		n++
	}
	if n != 1 {
		return e.usageErr(fs, "want exactly one of --image, --tar and --oci-layout")
	}
	if *insecure && *image == "" {
		return e.usageErr(fs, "--insecure goes with --image")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("template import", err)
	}
	fmt.Fprintf(e.stderr, "importing %s…\n", opts.Name)
	t, err := c.ImportTemplate(e.ctx, opts)
	if err != nil {
		return e.failOn("template import", opts.Name, err)
	}
	if *asJSON {
		return e.printJSON(t)
	}
	tw := e.table()
	fmt.Fprintln(tw, "TEMPLATE\tSIZE\tSTATUS")
	fmt.Fprintf(tw, "%s\t%s\t%s\n", t.TemplateID, units.Bytes(t.SizeBytes, units.Short), t.BuildStatus)
	tw.Flush()
	return exitOK
}
