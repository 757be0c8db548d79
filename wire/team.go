package wire

import "time"

// TeamLimits are a team's quotas, in POST /sbx/v1/teams and
// PATCH /sbx/v1/teams/{teamID}; 0 (or absent) is no limit.
type TeamLimits struct {
	MaxSandboxes int64   `json:"maxSandboxes"`
	MaxCPUs      float64 `json:"maxCpus"`
	MaxMemoryMB  int64   `json:"maxMemoryMB"`
	// MaxDiskMB bounds the disks of the team's sandboxes together (every
	// sandbox not killed: paused ones keep theirs).
	MaxDiskMB int64 `json:"maxDiskMB"`
	// MaxTimeoutSeconds bounds the time to live a sandbox may be given.
	MaxTimeoutSeconds int64 `json:"maxTimeoutSeconds"`
	// MaxPaused bounds the team's paused sandboxes.
	MaxPaused int64 `json:"maxPaused"`
	// MaxTemplates bounds the team's snapshots (and the default team's
	// templates).
	MaxTemplates int64 `json:"maxTemplates"`
	// MaxVolumeMB bounds the sizes of the team's volumes together.
	MaxVolumeMB int64 `json:"maxVolumeMB"`
}

// NewTeam is the body of POST /sbx/v1/teams.
type NewTeam struct {
	Name string `json:"name"`
	TeamLimits
}

// TeamUpdate is the body of PATCH /sbx/v1/teams/{teamID}: the limits
// given replace the team's; those absent are kept.
type TeamUpdate struct {
	MaxSandboxes      *int64   `json:"maxSandboxes,omitempty"`
	MaxCPUs           *float64 `json:"maxCpus,omitempty"`
	MaxMemoryMB       *int64   `json:"maxMemoryMB,omitempty"`
	MaxDiskMB         *int64   `json:"maxDiskMB,omitempty"`
	MaxTimeoutSeconds *int64   `json:"maxTimeoutSeconds,omitempty"`
	MaxPaused         *int64   `json:"maxPaused,omitempty"`
	MaxTemplates      *int64   `json:"maxTemplates,omitempty"`
	MaxVolumeMB       *int64   `json:"maxVolumeMB,omitempty"`
}

// TeamInfo is a team as the /sbx/v1/teams routes answer it.
type TeamInfo struct {
	// ID is the team's id: "default" for the default team.
	ID   string `json:"id"`
	Name string `json:"name"`
	TeamLimits
	CreatedAt time.Time `json:"createdAt"`
}
