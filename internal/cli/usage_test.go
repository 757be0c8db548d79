package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
)

// TestUsageOutput writes one report by sandbox, one by day and one total
// as CSV and as a table, compared with golden files.
func TestUsageOutput(t *testing.T) {
	a := client.UsageRecord{SandboxID: "i3x8k2p0q9z1", RunSeconds: 3600, VCPUSeconds: 7200, CPUSeconds: 61.5,
		MemoryGiBSeconds: 1800, MemoryUsedGiBSeconds: 12.25, DiskGiBHours: 10, EgressBytes: 5 << 20, PausedGiBHours: 0.5}
	b := client.UsageRecord{SandboxID: "k9q0z1i3x8p2", RunSeconds: 0.5, VCPUSeconds: 0.25, CPUSeconds: 0.125,
		MemoryGiBSeconds: 0.25, MemoryUsedGiBSeconds: 0.0625, DiskGiBHours: 1.0 / 7200, EgressBytes: 1234}
	total := client.UsageRecord{RunSeconds: 3600.5, VCPUSeconds: 7200.25, CPUSeconds: 61.625,
		MemoryGiBSeconds: 1800.25, MemoryUsedGiBSeconds: 12.3125, DiskGiBHours: 10 + 1.0/7200, EgressBytes: 5<<20 + 1234, PausedGiBHours: 0.5}
	day := a
	day.SandboxID, day.Day = "", "2026-12-07"
	for name, rep := range map[string]*client.UsageReport{
		"usage-by-sandbox": {TeamID: "default", By: "sandbox", Total: total, Records: []client.UsageRecord{a, b}},
		"usage-by-day":     {TeamID: "default", By: "day", Since: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Total: day, Records: []client.UsageRecord{day}},
		"usage-total":      {TeamID: "default", Total: total, Records: []client.UsageRecord{}},
	} {
		var csv, table bytes.Buffer
		if err := writeUsageCSV(&csv, rep); err != nil {
			t.Fatal(err)
		}
		golden(t, name+".csv", csv.String())
		e := &env{stdout: &table}
		tw := e.table()
		writeUsageTable(tw, rep)
		tw.Flush()
		golden(t, name+".txt", table.String())
	}
}
