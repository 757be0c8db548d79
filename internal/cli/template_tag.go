package cli

import (
	"flag"
	"fmt"
	"strings"

	"github.com/sbxdev/sbx/client"
)

// runTemplateTag implements `sbx template tag SOURCE TAG...`: point each
// TAG of SOURCE's name at the build SOURCE ("name" or "name:tag") names.
func runTemplateTag(e *env, fs *flag.FlagSet, args []string) int {
	asJSON := fs.Bool("json", false, "print what was assigned as JSON")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) < 2 {
		return e.usageErr(fs, "want a template (NAME or NAME:TAG) and at least one tag")
	}
	src, tags := pos[0], pos[1:]
	for _, t := range tags {
		if t == "" || strings.Contains(t, ":") {
			return e.usageErr(fs, "tag %q: want a bare tag, not NAME:TAG", t)
		}
	}
	c, err := e.client()
	if err != nil {
		return e.fail("template tag", err)
	}
	out, err := c.AssignTemplateTags(e.ctx, src, tags...)
	if err != nil {
		return e.failOn("template tag", src, err)
	}
	if *asJSON {
		return e.printJSON(out)
	}
	name, _, _ := strings.Cut(src, ":")
	for _, t := range out.Tags {
		fmt.Fprintf(e.stdout, "%s:%s\n", name, t)
	}
	fmt.Fprintf(e.stderr, "tagged build %s\n", out.BuildID)
	return exitOK
}

// runTemplateTags implements `sbx template tags NAME`: the name's tags,
// the default one first.
func runTemplateTags(e *env, fs *flag.FlagSet, args []string) int {
	asJSON := fs.Bool("json", false, "print the tags as JSON")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return e.usageErr(fs, "want one template name")
	}
	if strings.Contains(pos[0], ":") {
		return e.usageErr(fs, "%q: want a template name without a tag", pos[0])
	}
	c, err := e.client()
	if err != nil {
		return e.fail("template tags", err)
	}
	tags, err := c.TemplateTags(e.ctx, pos[0])
	if err != nil {
		return e.failOn("template tags", pos[0], err)
	}
	if *asJSON {
		if tags == nil {
			tags = []client.TemplateTag{}
		}
		return e.printJSON(tags)
	}
	now := e.now()
	tw := e.table()
	fmt.Fprintln(tw, "TAG\tBUILD\tASSIGNED")
	for _, t := range tags {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Tag, t.BuildID, ago(now, t.CreatedAt))
	}
	tw.Flush()
	return exitOK
}

// runTemplateUntag implements `sbx template untag NAME:TAG...`: remove
// each tag (a tag sandboxes run from is refused).
func runTemplateUntag(e *env, fs *flag.FlagSet, args []string) int {
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return e.usageErr(fs, "want NAME:TAG")
	}
	for _, ref := range pos {
		name, tag, found := strings.Cut(ref, ":")
		if !found || name == "" || tag == "" {
			return e.usageErr(fs, "%q: want NAME:TAG", ref)
		}
	}
	return e.forEach("template untag", pos, true, func(c *client.Client, ref string) error {
		name, tag, _ := strings.Cut(ref, ":")
		return c.RemoveTemplateTags(e.ctx, name, tag)
	})
}
