package cli

import (
	"fmt"
	"time"

	"github.com/sbxdev/sbx/client"
)

// runAudit implements `sbx audit`: the audit log, newest first (admin key).
func runAudit(e *env, args []string) int {
	fs := e.flags("audit")
	since := fs.Duration("since", 0, "only records from this long ago on (e.g. 24h)")
	key := fs.String("key", "", "only the records of this key ID")
	object := fs.String("object", "", "only the records about this object (a sandbox, webhook, key ... ID)")
	limit := fs.Int("limit", 100, "at most this many records (1-1000)")
	asJSON := fs.Bool("json", false, "print the records as JSON")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return e.usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *since < 0 {
		return e.usageErr(fs, "--since must not be negative")
	}
	c, err := e.client()
	if err != nil {
		return e.fail("audit", err)
	}
	opts := &client.AuditOptions{KeyID: *key, ObjectID: *object, Limit: *limit}
	if *since > 0 {
		opts.Since = e.now().Add(-*since)
	}
	recs, err := c.ListAudit(e.ctx, opts)
	if err != nil {
		return e.fail("audit", err)
	}
	if *asJSON {
		return e.printJSON(recs)
	}
	tw := e.table()
	fmt.Fprintln(tw, "TIME\tKEY\tROUTE\tOBJECT\tSTATUS\tFROM")
	for _, r := range recs {
		who := r.KeyID
		if who == "" {
			who = "-"
		} else if r.KeyName != "" {
			who += " (" + r.KeyName + ")"
		}
		obj := r.ObjectID
		if obj == "" {
			obj = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.Time.Local().Format(time.DateTime), who, r.Route, obj, r.Status, r.Remote)
	}
	tw.Flush()
	return exitOK
}
