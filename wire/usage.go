package wire

import "time"

// UsageReport answers GET /sbx/v1/usage: what a team's sandboxes used
// over the UTC days from Since to Until, in all (Total) and by sandbox or
// by day (Records, when By is "sandbox" or "day").
type UsageReport struct {
	TeamID string `json:"teamID"`
	// By is "sandbox", "day" or "" (Total only).
	By string `json:"by"`
	// Since and Until bound the days counted (zero: unbounded): a day
	// counts whole when it overlaps [Since, Until).
	Since   time.Time     `json:"since,omitzero"`
	Until   time.Time     `json:"until,omitzero"`
	Total   UsageRecord   `json:"total"`
	Records []UsageRecord `json:"records"`
}

// UsageRecord is what sandboxes used (docs/operations.md, Metering, says
// how each figure is measured): of one sandbox (SandboxID set), one UTC
// day (Day set, YYYY-MM-DD), or in all.
type UsageRecord struct {
	SandboxID string `json:"sandboxID,omitempty"`
	Day       string `json:"day,omitempty"`
	// RunSeconds is the time running.
	RunSeconds float64 `json:"runSeconds"`
	// VCPUSeconds is the CPU quota reserved (cores) times the seconds
	// running; CPUSeconds the CPU time the sandboxes' cgroups counted.
	VCPUSeconds float64 `json:"vcpuSeconds"`
	CPUSeconds  float64 `json:"cpuSeconds"`
	// MemoryGiBSeconds is the memory limit (GiB) times the seconds
	// running; MemoryUsedGiBSeconds the memory used, as sampled.
	MemoryGiBSeconds     float64 `json:"memoryGiBSeconds"`
	MemoryUsedGiBSeconds float64 `json:"memoryUsedGiBSeconds"`
	// DiskGiBHours is the disk quota (GiB) times the hours running.
	DiskGiBHours float64 `json:"diskGiBHours"`
	// EgressBytes is what the sandboxes sent through their network
	// links.
	EgressBytes int64 `json:"egressBytes"`
	// PausedGiBHours is the size (GiB) of what paused sandboxes kept
	// on disk (files, memory image) times the hours they were paused.
	PausedGiBHours float64 `json:"pausedGiBHours"`
}
