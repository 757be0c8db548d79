package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/units"
)

// templateSettingFlags are the flags of `sbx template import` and
// `sbx template set` that change what sandboxes of a template get. Only
// flags given on the command line are sent.
type templateSettingFlags struct {
	startCmd, readyCmd, workdir, user *string
	readyPort, readyTimeout, memoryMB *int
	cpus                              *float64
	env                               kvFlag
}

func settingsFlags(fs *flag.FlagSet) *templateSettingFlags {
	t := &templateSettingFlags{env: kvFlag{}}
	t.startCmd = fs.String("start-cmd", "", "shell `COMMAND` started in the background in every new sandbox (tag \"start\"); \"\" removes it")
	t.readyCmd = fs.String("ready-cmd", "", "shell `COMMAND` that must exit 0 before a create returns; \"\" removes it")
	t.readyPort = fs.Int("ready-port", 0, "TCP `PORT` that must accept connections in the sandbox before a create returns; 0 removes it")
	t.readyTimeout = fs.Int("ready-timeout", 0, "seconds a create waits for the ready check (0: the server's default)")
	t.cpus = fs.Float64("cpus", 0, "default CPU quota of its sandboxes, in cores (0: the server's)")
	t.memoryMB = fs.Int("memory-mb", 0, "default memory limit of its sandboxes, in MiB (0: the server's)")
	t.workdir = fs.String("workdir", "", "default working directory of commands (absolute)")
	t.user = fs.String("user", "", "default user of commands")
	fs.Var(t.env, "env", "environment default `K=V` for every process (repeatable; replaces the template's)")
	return t
}

// get returns the settings named on the command line.
func (t *templateSettingFlags) get(fs *flag.FlagSet) (client.TemplateSettings, error) {
	var st client.TemplateSettings
	var err error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "start-cmd":
			st.StartCmd = t.startCmd
		case "ready-cmd":
			st.ReadyCmd = t.readyCmd
		case "ready-port":
			if *t.readyPort < 0 || *t.readyPort > 65535 {
				err = errors.New("--ready-port must be from 1 to 65535 (0 removes it)")
			}
			st.ReadyPort = t.readyPort
		case "ready-timeout":
			st.ReadyTimeout = t.readyTimeout
		case "cpus":
			st.CPUs = t.cpus
		case "memory-mb":
			st.MemoryMB = t.memoryMB
		case "workdir":
			st.Workdir = t.workdir
		case "user":
			st.User = t.user
		case "env":
			st.Env = t.env
		}
	})
	return st, err
}

// runTemplateSet implements `sbx template set NAME SETTINGS`.
func runTemplateSet(e *env, fs *flag.FlagSet, args []string) int {
	settings := settingsFlags(fs)
	asJSON := fs.Bool("json", false, "print the template as JSON")
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
	n := 0
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "json" {
			n++
		}
	})
	if n == 0 {
		return e.usageErr(fs, "nothing to set: give at least one of --start-cmd, --ready-cmd, --ready-port, --ready-timeout, --cpus, --memory-mb, --workdir, --user, --env")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("template set", err)
	}
	d, err := c.SetTemplate(e.ctx, pos[0], st)
	if err != nil {
		return e.failOn("template set", pos[0], err)
	}
	if *asJSON {
		return e.printJSON(d)
	}
	printTemplateDetail(e, d)
	return exitOK
}

// runTemplateInspect implements `sbx template inspect NAME [--json]`.
func runTemplateInspect(e *env, fs *flag.FlagSet, args []string) int {
	asJSON := fs.Bool("json", false, "print the template as JSON")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return e.usageErr(fs, "want one template name")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("template inspect", err)
	}
	d, err := c.InspectTemplate(e.ctx, pos[0])
	if err != nil {
		return e.failOn("template inspect", pos[0], err)
	}
	if *asJSON {
		return e.printJSON(d)
	}
	printTemplateDetail(e, d)
	return exitOK
}

func printTemplateDetail(e *env, d *client.TemplateDetail) {
	tw := e.table()
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	orNone := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	source := func(set bool) string {
		if set {
			return ""
		}
		return " (server default)"
	}
	row("Template", d.TemplateID)
	row("Created", d.CreatedAt.Format("2006-01-02 15:04:05 MST"))
	row("Source", orNone(d.Source))
	row("Size", fmt.Sprintf("%s (%s on disk, shared by its sandboxes)", units.Bytes(d.SizeBytes, units.Short), units.Bytes(d.DiskBytes, units.Short)))
	row("Sandboxes", fmt.Sprint(d.Sandboxes))
	row("User", d.User)
	row("Workdir", orNone(d.Workdir))
	row("CPUs", fmt.Sprintf("%g%s", d.CPUCount, source(d.CPUCountSet)))
	row("Memory", fmt.Sprintf("%d MiB%s", d.MemoryMB, source(d.MemoryMBSet)))
	row("Start command", orNone(strings.Join(d.StartCmd, " ")))
	ready := []string{}
	if d.ReadyCmd != "" {
		ready = append(ready, "command: "+d.ReadyCmd)
	}
	if d.ReadyPort != 0 {
		ready = append(ready, fmt.Sprintf("port %d accepts", d.ReadyPort))
	}
	if d.ReadyTimeout != 0 {
		ready = append(ready, fmt.Sprintf("within %ds", d.ReadyTimeout))
	}
	row("Ready check", orNone(strings.Join(ready, "; ")))
	if len(d.Env) == 0 {
		row("Env", "-")
	}
	for i, kv := range d.Env {
		k := ""
		if i == 0 {
			k = "Env"
		}
		row(k, kv)
	}
	if len(d.Layers) == 0 {
		row("Layers", "-")
	}
	for i, l := range d.Layers {
		k := ""
		if i == 0 {
			k = "Layers"
		}
		row(k, fmt.Sprintf("%s %s", l.Digest, units.Bytes(l.SizeBytes, units.Short)))
	}
	tw.Flush()
}
