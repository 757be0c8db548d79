package cli

import (
	"fmt"

	"github.com/sbxdev/sbx/client"
)

// runCreate implements `sbx create`: it prints the new sandbox's ID, or the
// SDK's client.Sandbox with --json.
func runCreate(e *env, args []string) int {
	fs := e.flags("create")
	tmpl := fs.String("template", "base", "template ID or alias")
	timeout := fs.String("timeout", "", "how long the sandbox lives, such as 10m; 0 for no limit (default: the server's)")
	meta, envs := kvFlag{}, kvFlag{}
	fs.Var(meta, "meta", "metadata `K=V` (repeatable)")
	fs.Var(envs, "env", "environment variable `K=V` for every process (repeatable)")
	rt := fs.String("runtime", "", "isolation `RUNTIME`: runc or runsc (gVisor) (default: the server's)")
	cpus := fs.Float64("cpus", 0, "CPU quota in cores (default: the template's, else the server's)")
	memMB := fs.Int("memory-mb", 0, "memory limit in MiB (default: the template's, else the server's)")
	private := fs.Bool("private", false, "make the sandbox's ports reachable only with its traffic access token (printed to stderr)")
	vols := volumeFlag{}
	fs.Var(vols, "volume", "mount volume `NAME:PATH` (repeatable)")
	fromSnapshot := fs.String("from-snapshot", "", "start from snapshot `ID` (or name) instead of a template")
	life := lifecycleFlags(fs)
	asJSON := fs.Bool("json", false, "print the sandbox as JSON")
	var egress networkPolicyFlags
	egress.add(fs)
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return e.usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *cpus < 0 || *memMB < 0 {
		return e.usageErr(fs, "--cpus and --memory-mb must be positive")
	}
	opts := client.CreateOptions{Template: *tmpl, Metadata: meta.orNil(), Env: envs.orNil(), CPUs: *cpus, MemoryMB: *memMB, Runtime: *rt, PrivateTraffic: *private}
	if len(vols) > 0 {
		opts.Volumes = vols
	}
	if *fromSnapshot != "" {
		opts.Template = *fromSnapshot
	}
	var err error
	if opts.Network, err = egress.policy(); err != nil {
		return e.usageErr(fs, "%v", err)
	}
	if opts.Lifecycle, err = life(); err != nil {
		return e.usageErr(fs, "%v", err)
	}
	if *timeout != "" {
		d, err := parseTimeout(*timeout)
		if err != nil {
			return e.usageErr(fs, "%v", err)
		}
		opts.Timeout = d
	}
	c, err := e.client()
	if err != nil {
		return e.fail("create", err)
	}
	sb, err := c.CreateSandbox(e.ctx, opts)
	if err != nil {
		return e.fail("create", err)
	}
	if *asJSON {
		return e.printJSON(sb)
	}
	if sb.TrafficAccessToken != "" {
		fmt.Fprintf(e.stderr, "traffic access token (send it in the %s header): %s\n", client.TrafficTokenHeader, sb.TrafficAccessToken)
	}
	fmt.Fprintln(e.stdout, sb.ID)
	return exitOK
}
