package cli

import (
	"fmt"
	"time"

	"github.com/sbxdev/sbx/client"
)

// runLsAny implements `sbx ls`: with no argument, the sandboxes (runLs);
// with a sandbox ID, the files in it (runLsFiles).
func runLsAny(e *env, args []string) int {
	fs := e.flags("ls")
	fs.Var(kvFlag{}, "meta", "keep sandboxes with metadata `K=V` (repeatable)")
	fs.Var(&listFlag{}, "state", "keep sandboxes in `STATE`: running or paused (repeatable; default running)")
	asJSON := fs.Bool("json", false, "print the sandboxes, or the files, as JSON")
	user := fs.String("user", "", "with ID: list as `USER` (default: the template's user)")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return runLs(e, args)
	}
	if len(pos) > 2 {
		return e.usageErr(fs, "unexpected argument %q", pos[2])
	}
	dir := "."
	if len(pos) == 2 {
		dir = pos[1]
	}
	return e.lsFiles(pos[0], dir, *user, *asJSON)
}

// lsFiles lists directory dir of sandbox id as ls -l does, or as
// []client.EntryInfo with --json. A file is listed alone.
func (e *env) lsFiles(id, dir, user string, asJSON bool) int {
	c, err := e.client()
	if err != nil {
		return e.fail("ls", err)
	}
	sb, err := attach(e.ctx, c, id)
	if err != nil {
		return e.failOn("ls", id, err)
	}
	opts := &client.FileOptions{User: user}
	st, err := sb.Stat(e.ctx, dir, opts)
	if err != nil {
		return e.failOn("ls", id, err)
	}
	entries := []client.EntryInfo{*st}
	if st.Type == client.EntryDir {
		if entries, err = sb.List(e.ctx, dir, 1, opts); err != nil {
			return e.failOn("ls", id, err)
		}
	}
	if asJSON {
		return e.printJSON(entries)
	}
	tw := e.table()
	now := e.now()
	for _, en := range entries {
		name := en.Name
		if en.SymlinkTarget != "" {
			name += " -> " + en.SymlinkTarget
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", en.Permissions, en.Owner, en.Group, en.Size, lsTime(now, en.ModifiedTime), name)
	}
	tw.Flush()
	return exitOK
}

// lsTime renders a modification time as ls does: the time of day within
// six months, else the year.
func lsTime(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	t = t.Local()
	if d := now.Sub(t); d < 182*24*time.Hour && d > -time.Hour {
		return t.Format("Jan _2 15:04")
	}
	return t.Format("Jan _2  2006")
}

// runCat implements `sbx cat ID PATH...`: the files' contents to stdout,
// streamed.
func runCat(e *env, args []string) int {
	fs := e.flags("cat")
	user := fs.String("user", "", "read as `USER` (default: the template's user)")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) < 2 {
		return e.usageErr(fs, "want a sandbox ID and a path")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("cat", err)
	}
	sb, err := attach(e.ctx, c, pos[0])
	if err != nil {
		return e.failOn("cat", pos[0], err)
	}
	for _, p := range pos[1:] {
		rc, size, err := sb.OpenFile(e.ctx, p, &client.FileOptions{User: *user})
		if err != nil {
			return e.failOn("cat", p, err)
		}
		err = e.copyOut(e.stdout, rc, p, size)
		rc.Close()
		if err != nil {
			return e.failOn("cat", p, err)
		}
	}
	return exitOK
}
