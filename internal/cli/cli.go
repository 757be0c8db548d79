// Package cli implements the sbx command line: `sbx serve` and the
// subcommands that are clients of a running server.
//
// # Overview
//
// Every client subcommand talks to the server's HTTP API through the public
// Go SDK ([github.com/sbxdev/sbx/client]); there is no private protocol. The
// server and key come from SBX_URL and SBX_API_KEY, overridden by --url and
// --api-key (given before or after the subcommand's name). One file holds
// each subcommand.
//
// Human text, prompts and progress go to stderr; data (IDs, tables, --json)
// goes to stdout. --json prints the SDK's own types.
//
// # Exit codes
//
//	0    success
//	1    error (the server refused, the connection failed, ...)
//	2    usage error (unknown command or flag, missing argument)
//	130  interrupted (Ctrl-C) while a remote command ran
//
// `sbx exec`, `sbx run` and `sbx shell` exit with the remote command's exit
// code; when a signal ended the remote command, 128 plus the signal's
// number, as a shell does.
//
// # Usage
//
// cmd/sbx calls [Main] with the process's arguments and standard streams;
// tests call it in-process the same way.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sbxdev/sbx/client"
)

// Exit codes; see the package documentation.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// env is what a subcommand runs with: its streams, the process environment
// and the global flags.
type env struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// url and apiKey are the global --url and --api-key, "" when not given.
	url, apiKey string
}

// command is one subcommand.
type command struct {
	name    string
	usage   string // arguments, after "sbx NAME "
	summary string
	run     func(e *env, args []string) int
}

// commands lists the subcommands in the order help shows them.
func commands() []command {
	return []command{
		{"create", "[--template T | --from-snapshot S] [--timeout DURATION|0] [--cpus N] [--memory-mb N] [--meta K=V]... [--env K=V]... [--lifecycle persistent] [--auto-pause] [--auto-resume] [--idle-pause D] [--deny-all] [--allow E]... [--deny E]... [--volume NAME:PATH]... [--json]", "create a sandbox and print its ID", runCreate},
		{"ls", "[--meta K=V]... [--state running|paused]... [--json] | ID [PATH] [--user U] [--json]", "list sandboxes, or the files in a sandbox's directory", runLsAny},
		{"exec", "[--user U] [--cwd DIR] [--env K=V]... [-i] [-t] ID [--] CMD [ARG...]", "run a command in a sandbox", runExec},
		{"shell", "[--user U] [--cwd DIR] ID", "open an interactive shell in a sandbox", runShell},
		{"code", "ID [--language L] [--context C] [--env K=V]... [--out DIR] [--timeout D] CODE|-", "run code in a code interpreter sandbox; print its output, save its images", runCode},
		{"run", "[--template T] [--timeout D] [--user U] [--env K=V]... [-i] [--] CMD [ARG...]", "run a command in a new sandbox, then kill it", runRun},
		{"cp", "[--user U] LOCAL ID:PATH | ID:PATH LOCAL|-", "copy files and directories into or out of a sandbox", runCp},
		{"cat", "[--user U] ID PATH...", "print files of a sandbox", runCat},
		{"kill", "ID...", "kill sandboxes", runKill},
		{"timeout", "ID DURATION|0", "set how long from now a sandbox lives (0: no limit)", runTimeout},
		{"pause", "[--files-only] ID...", "pause sandboxes", runPause},
		{"resume", "[--timeout D] [--reboot] ID...", "resume paused sandboxes", runResume},
		{"snapshot", "create ID [--name N] [--json] | ls [--sandbox ID] [--json] | rm ID...", "snapshot a sandbox; list or delete snapshots", runSnapshot},
		{"fork", "[-n N] [--timeout D] [--json] ID", "copy a running sandbox N times", runFork},
		{"network", "set ID [--deny-all|--allow-all] [--allow CIDR|IP|DOMAIN[:PORT]]... [--deny ...]... | show ID [--json]", "set or show a sandbox's egress policy", runNetwork},
		{"template", "ls [--json] | inspect NAME [--json] | rm NAME | import NAME (--image REF [--insecure] | --tar PATH | --oci-layout DIR) [SETTINGS] | set NAME SETTINGS | build [-f DOCKERFILE] [--name NAME] [--build-arg K=V]... [--no-cache] [CONTEXT] | build code-interpreter-v1 | tag SOURCE TAG... [--json] | tags NAME [--json] | untag NAME:TAG...", "list, inspect, delete, import, configure, build or tag templates", runTemplate},
		{"secret", "create NAME [--from-file F] [--meta K=V]... [--json] | update NAME|ID ... | ls [--json] | rm NAME|ID...", "create, update, list, delete secrets (the value is read from stdin)", runSecret},
		{"volume", "create NAME [--size-mb N] [--json] | ls [--json] | rm NAME|ID... | cp LOCAL VOLUME:PATH | VOLUME:PATH LOCAL|-", "create, list, delete volumes; copy files into or out of them", runVolume},
		{"key", "create [--name N] [--team T] [--role admin|member] [--json] | ls [--json] | rm ID", "manage API keys", runKey},
		{"team", "create NAME [LIMITS] [--json] | ls [--json] | set ID|NAME [LIMITS] | rm ID|NAME...", "manage teams and their quotas (admin key)", runTeam},
		{"node", "ls [--json] | rm NAME... | drain NAME [--json] | ready NAME", "list the nodes sharing the server's database; remove a stopped or lost one, drain one (its persistent sandboxes move to others) or have it take placements again (admin key)", runNode},
		{"audit", "[--since D] [--key ID] [--object ID] [--limit N] [--json]", "show the audit log (admin key)", runAudit},
		{"usage", "[--team T] [--since D|DAY] [--until D|DAY] [--by sandbox|day] [--json|--csv]", "show what the team's sandboxes used (metering)", runUsage},
		{"serve", "[flags]", "run the sbx server", func(e *env, args []string) int { return runServe(e.ctx, args) }},
		{"version", "", "print the version", runVersion},
		{"help", "[COMMAND]", "show help", runHelp},
	}
}

// Main runs the sbx command line with args (without the program name) and
// returns the process's exit code. ctx should be cancelled on SIGINT and
// SIGTERM; commands that run remote processes turn that into a signal to the
// remote process and exit 130.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now}
	return e.main(args)
}

func (e *env) main(args []string) int {
	global := flag.NewFlagSet("sbx", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.StringVar(&e.url, "url", "", "server URL")
	global.StringVar(&e.apiKey, "api-key", "", "API key")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			e.usage(e.stdout)
			return exitOK
		}
		fmt.Fprintf(e.stderr, "sbx: %v\n", err)
		e.usage(e.stderr)
		return exitUsage
	}
	args = global.Args()
	if len(args) == 0 {
		e.usage(e.stderr)
		return exitUsage
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "sbx: unknown command %q\n", args[0])
	e.usage(e.stderr)
	return exitUsage
}

func (e *env) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: sbx [--url URL] [--api-key KEY] COMMAND [ARGS]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nEnvironment: SBX_URL (default %s), SBX_API_KEY.\nRun 'sbx help COMMAND' for a command's flags.\n", client.DefaultURL)
}

// flags returns a flag set for subcommand name, with the connection flags
// every client subcommand accepts.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("sbx "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.url, "url", e.url, "server `URL` (default $SBX_URL or "+client.DefaultURL+")")
	fs.StringVar(&e.apiKey, "api-key", e.apiKey, "API `key` (default $SBX_API_KEY)")
	var usage string
	for _, c := range commands() {
		if c.name == name {
			usage = c.usage
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sbx %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses a subcommand's flags, allowing flags after positional
// arguments up to a "--". It returns the positional arguments, or an exit
// code when parsing ended the command (help or a usage error).
func (e *env) parse(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseHead parses flags up to the first positional argument and returns
// all that follows unparsed: for commands whose tail is a remote command.
func (e *env) parseHead(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK, false
		}
		return nil, exitUsage, false
	}
	return fs.Args(), 0, true
}

// parseOne parses args for subcommand fs, which takes one sandbox ID, and
// returns it; ok false means return code (help shown, or a usage error).
func (e *env) parseOne(fs *flag.FlagSet, args []string) (id string, code int, ok bool) {
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return "", code, false
	}
	if len(pos) != 1 {
		return "", e.usageErr(fs, "want one sandbox ID"), false
	}
	return pos[0], 0, true
}

// usageErr reports a usage error of subcommand fs and returns exitUsage.
func (e *env) usageErr(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

// client returns an SDK client for the resolved URL and key.
func (e *env) client() (*client.Client, error) {
	url := e.url
	if url == "" {
		url = e.getenv(client.EnvURL)
	}
	if url == "" {
		url = client.DefaultURL
	}
	if err := client.ValidateURL(url); err != nil {
		return nil, err
	}
	key := e.apiKey
	if key == "" {
		key = e.getenv(client.EnvAPIKey)
	}
	if key == "" {
		return nil, errors.New("no API key: set SBX_API_KEY or pass --api-key")
	}
	return client.New(url, key, client.WithUserAgent("sbx-cli/"+version())), nil
}

// fail prints err for subcommand name and returns exitError.
func (e *env) fail(name string, err error) int { return e.failOn(name, "", err) }

// failOn prints err about one object (a sandbox ID, a key ID) for
// subcommand name and returns exitError.
func (e *env) failOn(name, object string, err error) int {
	msg := strings.TrimPrefix(err.Error(), "sbx: ")
	if client.IsUnauthenticated(err) {
		msg += " (check SBX_API_KEY or --api-key)"
	}
	if object != "" {
		msg = object + ": " + msg
	}
	fmt.Fprintf(e.stderr, "sbx %s: %s\n", name, msg)
	return exitError
}

// forEach runs do on every id for subcommand name (kill, pause, rm, ...),
// reporting each failure with its id and going on with the next. With echo
// it prints each id done. It returns exitOK only if every call succeeded.
func (e *env) forEach(name string, ids []string, echo bool, do func(c *client.Client, id string) error) int {
	c, err := e.client()
	if err != nil {
		return e.fail(name, err)
	}
	status := exitOK
	for _, id := range ids {
		if err := do(c, id); err != nil {
			status = e.failOn(name, id, err)
			continue
		}
		if echo {
			fmt.Fprintln(e.stdout, id)
		}
	}
	return status
}

// printJSON writes v to stdout as indented JSON.
func (e *env) printJSON(v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		fmt.Fprintf(e.stderr, "sbx: encode JSON: %v\n", err)
		return exitError
	}
	b = append(b, '\n')
	if _, err := e.stdout.Write(b); err != nil {
		return exitError
	}
	return exitOK
}

// table returns a tab writer on stdout for aligned columns.
func (e *env) table() *tabwriter.Writer {
	return tabwriter.NewWriter(e.stdout, 0, 0, 3, ' ', 0)
}

// kvFlag is a repeatable K=V flag.
type kvFlag map[string]string

func (f kvFlag) String() string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+f[k])
	}
	return strings.Join(parts, ",")
}

func (f kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not K=V", s)
	}
	f[k] = v
	return nil
}

// orNil returns nil for an empty map so that it is left out of requests.
func (f kvFlag) orNil() map[string]string {
	if len(f) == 0 {
		return nil
	}
	return f
}

// listFlag is a repeatable string flag.
type listFlag []string

func (f *listFlag) String() string     { return strings.Join(*f, ",") }
func (f *listFlag) Set(s string) error { *f = append(*f, s); return nil }

// parseTimeout reads a sandbox timeout: a Go duration ("90s", "1h30m") or
// whole seconds ("90"); 0 means no limit (client.NoTimeout).
func parseTimeout(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := parseUint(s); err == nil {
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("timeout %q: want a duration such as 90s or 1h, or 0 for no limit", s)
	}
	switch {
	case d < 0:
		return 0, fmt.Errorf("timeout %q is negative", s)
	case d == 0:
		return client.NoTimeout, nil
	}
	return d, nil
}

func parseUint(s string) (uint64, error) {
	var n uint64
	if s == "" {
		return 0, errors.New("empty")
	}
	for _, c := range s {
		if c < '0' || c > '9' || n > 1<<40 {
			return 0, errors.New("not a number")
		}
		n = n*10 + uint64(c-'0')
	}
	return n, nil
}

// ago renders a past time for tables: "45s ago", "3m ago", "2h ago", "4d ago".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return short(now.Sub(t)) + " ago"
}

// until renders when a sandbox ends: "in 4m", "never", "now".
func until(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "now"
	}
	return "in " + short(d)
}

// short renders d in its largest sensible unit, rounded to the nearest.
func short(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute-time.Second/2:
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	case d < time.Hour-time.Minute/2:
		return fmt.Sprintf("%dm", int(d.Round(time.Minute)/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Round(time.Hour)/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d.Round(24*time.Hour)/(24*time.Hour)))
}
