package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/template"
)

// kvList is a repeatable K=V flag.
type kvList map[string]string

func (l kvList) String() string { return "" }

func (l kvList) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, not %q", s)
	}
	l[k] = v
	return nil
}

var nameJunk = regexp.MustCompile(`[^a-z0-9._-]+`)

// runBuiltinBuild implements `sbx template build NAME` for a template the
// server builds itself (base, code-interpreter-v1): the progress on stderr,
// the name on stdout once built.
func runBuiltinBuild(e *env, name string) int {
	c, err := e.client()
	if err != nil {
		return e.fail("template build", err)
	}
	err = c.BuildBuiltinTemplate(e.ctx, name, func(line string) { fmt.Fprintln(e.stderr, line) })
	if err != nil {
		if e.ctx.Err() != nil {
			fmt.Fprintf(e.stderr, "sbx template build: stopped following; the build of %s goes on on the server\n", name)
			return exitInterrupted
		}
		return e.failOn("template build", name, err)
	}
	fmt.Fprintln(e.stdout, name)
	return exitOK
}

// runTemplateBuild implements `sbx template build [-f DOCKERFILE] [--name
// NAME] [--build-arg K=V]... [--no-cache] [--json] [CONTEXT]`: the context
// directory (default ".") is sent to the server with the Dockerfile
// (default CONTEXT/Dockerfile), the steps and their output are printed on
// stderr as the server runs them, and the template's name (or, with
// --json, the finished build) on stdout.
func runTemplateBuild(e *env, fs *flag.FlagSet, args []string) int {
	file := fs.String("f", "", "the `Dockerfile` (default CONTEXT/Dockerfile)")
	name := fs.String("name", "", "the template's `name` (default: the context directory's name)")
	buildArgs := kvList{}
	fs.Var(buildArgs, "build-arg", "set an ARG: `NAME=VALUE` (repeatable)")
	noCache := fs.Bool("no-cache", false, "run every step, even those with a cached layer")
	asJSON := fs.Bool("json", false, "print the finished build as JSON")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return e.usageErr(fs, "want at most one context directory")
	}
	ctxDir := "."
	if len(pos) == 1 {
		ctxDir = pos[0]
	}
	if _, err := os.Stat(ctxDir); err != nil && *file == "" && *name == "" && template.IsBuiltin(ctxDir) {
		return runBuiltinBuild(e, ctxDir)
	}
	if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
		return e.usageErr(fs, "context %q is not a directory", ctxDir)
	}
	if *file == "" {
		*file = filepath.Join(ctxDir, "Dockerfile")
	}
	dockerfile, err := os.ReadFile(*file)
	if err != nil {
		return e.fail("template build", fmt.Errorf("read the Dockerfile: %w", err))
	}
	if *name == "" {
		abs, _ := filepath.Abs(ctxDir)
		*name = strings.Trim(nameJunk.ReplaceAllString(strings.ToLower(filepath.Base(abs)), "-"), "-._")
		if *name == "" {
			return e.usageErr(fs, "cannot name the template after the context directory; give --name")
		}
	}
	c, err := e.client()
	if err != nil {
		return e.fail("template build", err)
	}
	b, err := c.BuildTemplate(e.ctx, client.BuildOptions{
		Name:       *name,
		ContextDir: ctxDir,
		Dockerfile: string(dockerfile),
		BuildArgs:  buildArgs,
		NoCache:    *noCache,
	}, func(ev client.BuildEvent) {
		if ev.Kind != "end" {
			fmt.Fprintln(e.stderr, ev.Message)
		}
	})
	var be *client.BuildError
	if errors.As(err, &be) {
		if *asJSON {
			e.printJSON(b)
		}
		return e.failOn("template build", *name, err)
	}
	if err != nil {
		if b != nil && e.ctx.Err() != nil {
			fmt.Fprintf(e.stderr, "sbx template build: stopped following; build %s goes on on the server\n", b.BuildID)
			return exitInterrupted
		}
		return e.failOn("template build", *name, err)
	}
	if *asJSON {
		return e.printJSON(b)
	}
	fmt.Fprintln(e.stdout, b.TemplateID)
	return exitOK
}
