package wire

import "time"

// SandboxMetric is one resource sample of a sandbox (E2B's SandboxMetric):
// GET /sandboxes/{id}/metrics answers a list of them, oldest first.
type SandboxMetric struct {
	// Timestamp is when the sample was taken (deprecated by E2B in favour
	// of TimestampUnix; the e2b SDKs still read it).
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	// CPUCount is the sandbox's cores; CPUUsedPct the share of them used
	// since the sample before, 0 to 100.
	CPUCount   int64   `json:"cpuCount"`
	CPUUsedPct float64 `json:"cpuUsedPct"`
	// MemUsed leaves out reclaimable page cache; MemTotal is the
	// sandbox's memory limit; MemCache its page cache. Bytes.
	MemUsed  int64 `json:"memUsed"`
	MemTotal int64 `json:"memTotal"`
	MemCache int64 `json:"memCache"`
	// DiskUsed and DiskTotal are of the sandbox's disk, in bytes.
	DiskUsed  int64 `json:"diskUsed"`
	DiskTotal int64 `json:"diskTotal"`
}

// SandboxesWithMetrics answers GET /sandboxes/metrics: the newest sample
// of each sandbox asked for that has one.
type SandboxesWithMetrics struct {
	Sandboxes map[string]SandboxMetric `json:"sandboxes"`
}

// Team is a team (E2B's Team), as GET /teams lists it. sbx has one team,
// the default.
type Team struct {
	TeamID string `json:"teamID"`
	Name   string `json:"name"`
	// APIKey is the key the request was made with: sbx keeps no key in
	// clear.
	APIKey    string `json:"apiKey"`
	IsDefault bool   `json:"isDefault"`
}

// TeamMetric is one sample of a team's sandboxes (E2B's TeamMetric).
type TeamMetric struct {
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	// ConcurrentSandboxes is how many sandboxes ran; SandboxStartRate how
	// many started per second in the interval before the sample.
	ConcurrentSandboxes int64   `json:"concurrentSandboxes"`
	SandboxStartRate    float64 `json:"sandboxStartRate"`
}

// MaxTeamMetric is the largest value of a team metric in an interval and
// when it was reached (E2B's MaxTeamMetric).
type MaxTeamMetric struct {
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	Value         float64   `json:"value"`
}
