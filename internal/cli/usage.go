package cli

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/units"
)

// parseWhen reads a --since/--until value: a duration ago (e.g. 24h), a
// YYYY-MM-DD day (UTC) or an RFC 3339 time.
func parseWhen(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a duration ago (24h), a YYYY-MM-DD day or an RFC 3339 time", v)
}

// runUsage implements `sbx usage`: what the team's sandboxes used.
func runUsage(e *env, args []string) int {
	fs := e.flags("usage")
	team := fs.String("team", "", "the team (default: the key's; another team needs an admin key)")
	since := fs.String("since", "", "from this UTC day on: a duration ago (e.g. 168h), YYYY-MM-DD or an RFC 3339 time")
	until := fs.String("until", "", "up to (not including) this UTC day, as --since")
	by := fs.String("by", "", "sandbox or day: a line for each (default: the total only)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	asCSV := fs.Bool("csv", false, "print the lines (or the total) as CSV")
	pos, code, ok := e.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return e.usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *asJSON && *asCSV {
		return e.usageErr(fs, "--json and --csv exclude each other")
	}
	if *by != "" && *by != "sandbox" && *by != "day" {
		return e.usageErr(fs, "--by must be sandbox or day")
	}
	opts := &client.UsageOptions{TeamID: *team, By: *by}
	for _, f := range []struct {
		v   string
		dst *time.Time
	}{{*since, &opts.Since}, {*until, &opts.Until}} {
		if f.v == "" {
			continue
		}
		t, err := parseWhen(f.v, e.now())
		if err != nil {
			return e.usageErr(fs, "%v", err)
		}
		*f.dst = t
	}
	c, err := e.client()
	if err != nil {
		return e.fail("usage", err)
	}
	rep, err := c.Usage(e.ctx, opts)
	if err != nil {
		return e.fail("usage", err)
	}
	switch {
	case *asJSON:
		return e.printJSON(rep)
	case *asCSV:
		if err := writeUsageCSV(e.stdout, rep); err != nil {
			return exitError
		}
		return exitOK
	}
	tw := e.table()
	writeUsageTable(tw, rep)
	tw.Flush()
	return exitOK
}

// usageColumns are the figures of a usage line, as the CSV names them.
var usageColumns = []string{"run_seconds", "vcpu_seconds", "cpu_seconds", "memory_gib_seconds", "memory_used_gib_seconds", "disk_gib_hours", "paused_gib_hours", "egress_bytes"}

func usageFigures(r client.UsageRecord) []float64 {
	return []float64{r.RunSeconds, r.VCPUSeconds, r.CPUSeconds, r.MemoryGiBSeconds, r.MemoryUsedGiBSeconds, r.DiskGiBHours, r.PausedGiBHours}
}

// usageKey is the first column of a report's lines: what they are by.
func usageKey(rep *client.UsageReport, r client.UsageRecord) (string, string) {
	switch rep.By {
	case "sandbox":
		return "sandbox", r.SandboxID
	case "day":
		return "day", r.Day
	}
	return "team", rep.TeamID
}

// writeUsageCSV writes a header and a line per record (or the total when
// the report is by nothing), figures in full precision.
func writeUsageCSV(w io.Writer, rep *client.UsageReport) error {
	cw := csv.NewWriter(w)
	recs := rep.Records
	if rep.By == "" {
		recs = []client.UsageRecord{rep.Total}
	}
	k, _ := usageKey(rep, client.UsageRecord{})
	cw.Write(append([]string{k}, usageColumns...))
	for _, r := range recs {
		_, v := usageKey(rep, r)
		line := []string{v}
		for _, f := range usageFigures(r) {
			line = append(line, strconv.FormatFloat(f, 'f', -1, 64))
		}
		line = append(line, strconv.FormatInt(r.EgressBytes, 10))
		cw.Write(line)
	}
	cw.Flush()
	return cw.Error()
}

// writeUsageTable writes the lines and the total for people: CPU and
// memory in hours, disk in GiB-hours.
func writeUsageTable(w io.Writer, rep *client.UsageReport) {
	k, _ := usageKey(rep, client.UsageRecord{})
	fmt.Fprintf(w, "%s\tRUN (h)\tVCPU (h)\tCPU USED (h)\tMEMORY (GiB-h)\tMEMORY USED (GiB-h)\tDISK (GiB-h)\tPAUSED (GiB-h)\tEGRESS\n", strings.ToUpper(k))
	line := func(name string, r client.UsageRecord) {
		fmt.Fprintf(w, "%s\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%s\n", name, r.RunSeconds/3600, r.VCPUSeconds/3600, r.CPUSeconds/3600,
			r.MemoryGiBSeconds/3600, r.MemoryUsedGiBSeconds/3600, r.DiskGiBHours, r.PausedGiBHours, units.Bytes(r.EgressBytes, units.Short))
	}
	for _, r := range rep.Records {
		_, v := usageKey(rep, r)
		line(v, r)
	}
	if rep.By != "" {
		line("total", rep.Total)
		return
	}
	line(rep.TeamID, rep.Total)
}
