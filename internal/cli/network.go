package cli

import (
	"flag"
	"fmt"
	"strings"

	"github.com/sbxdev/sbx/client"
)

// entriesFlag is a repeatable flag whose values may also be
// comma-separated.
type entriesFlag []string

func (f *entriesFlag) String() string { return strings.Join(*f, ",") }

func (f *entriesFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*f = append(*f, v)
		}
	}
	return nil
}

// networkPolicyFlags are the egress flags of `sbx network set` and
// `sbx create`.
type networkPolicyFlags struct {
	denyAll, allowAll bool
	allow, deny       entriesFlag
}

// add defines the flags on fs.
func (f *networkPolicyFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&f.denyAll, "deny-all", false, "deny all egress except what --allow names")
	fs.BoolVar(&f.allowAll, "allow-all", false, "allow all egress except what --deny names (the server's default unless it runs with --internet=false)")
	fs.Var(&f.allow, "allow", "allow `CIDR|IP|DOMAIN[:PORT]` (repeatable or comma-separated; *.example.com for subdomains)")
	fs.Var(&f.deny, "deny", "deny `CIDR|IP|DOMAIN[:PORT]` (repeatable or comma-separated)")
}

// policy returns the policy the flags describe, nil when none was given.
func (f *networkPolicyFlags) policy() (*client.NetworkPolicy, error) {
	if f.denyAll && f.allowAll {
		return nil, fmt.Errorf("--deny-all and --allow-all exclude each other")
	}
	if !f.denyAll && !f.allowAll && len(f.allow)+len(f.deny) == 0 {
		return nil, nil
	}
	p := &client.NetworkPolicy{AllowOut: f.allow, DenyOut: f.deny}
	if f.denyAll || f.allowAll {
		v := f.allowAll
		p.AllowInternetAccess = &v
	}
	return p, nil
}

// runNetwork implements `sbx network set ID ...` and `sbx network show ID`.
func runNetwork(e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "sbx network: want set or show")
		return exitUsage
	}
	switch args[0] {
	case "set":
		return runNetworkSet(e, args[1:])
	case "show":
		return runNetworkShow(e, args[1:])
	}
	fmt.Fprintf(e.stderr, "sbx network: unknown subcommand %q (set or show)\n", args[0])
	return exitUsage
}

func runNetworkSet(e *env, args []string) int {
	fs := e.flags("network set")
	var f networkPolicyFlags
	f.add(fs)
	id, code, ok := e.parseOne(fs, args)
	if !ok {
		return code
	}
	pp, err := f.policy()
	if err != nil {
		return e.usageErr(fs, "%v", err)
	}
	var p client.NetworkPolicy // none given: allow all (the whole policy is replaced)
	if pp != nil {
		p = *pp
	}
	c, err := e.client()
	if err != nil {
		return e.fail("network set", err)
	}
	if err := c.UpdateNetwork(e.ctx, id, p); err != nil {
		return e.fail("network set", err)
	}
	return exitOK
}

func runNetworkShow(e *env, args []string) int {
	fs := e.flags("network show")
	asJSON := fs.Bool("json", false, "print the policy as JSON")
	id, code, ok := e.parseOne(fs, args)
	if !ok {
		return code
	}
	c, err := e.client()
	if err != nil {
		return e.fail("network show", err)
	}
	info, err := c.GetSandbox(e.ctx, id)
	if err != nil {
		return e.fail("network show", err)
	}
	p := client.NetworkPolicy{AllowInternetAccess: info.AllowInternetAccess}
	if info.Network != nil {
		p.AllowOut, p.DenyOut = info.Network.AllowOut, info.Network.DenyOut
	}
	if *asJSON {
		return e.printJSON(p)
	}
	internet := "server default"
	if p.AllowInternetAccess != nil {
		internet = map[bool]string{true: "allowed", false: "denied"}[*p.AllowInternetAccess]
	}
	fmt.Fprintf(e.stdout, "internet: %s\nallow:    %s\ndeny:     %s\n", internet, orNone(p.AllowOut), orNone(p.DenyOut))
	return exitOK
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, " ")
}
