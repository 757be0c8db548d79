package wire

import "time"

// TeamLimits are a team's quotas, in POST /sbx/v1/teams and
// PATCH /sbx/v1/teams/{teamID}; 0 (or absent) is no limit.
type TeamLimits struct {
	MaxSandboxes int64   `json:"maxSandboxes"`
	MaxCPUs      float64 `json:"maxCpus"`
	MaxMemoryMB  int64   `json:"maxMemoryMB"`
}

// NewTeam is the body of POST /sbx/v1/teams.
type NewTeam struct {
	Name string `json:"name"`
	TeamLimits
}

// TeamUpdate is the body of PATCH /sbx/v1/teams/{teamID}: the limits
// given replace the team's; those absent are kept.
type TeamUpdate struct {
	MaxSandboxes *int64   `json:"maxSandboxes,omitempty"`
	MaxCPUs      *float64 `json:"maxCpus,omitempty"`
	MaxMemoryMB  *int64   `json:"maxMemoryMB,omitempty"`
}

// TeamInfo is a team as the /sbx/v1/teams routes answer it.
type TeamInfo struct {
	// ID is the team's id: "default" for the default team.
	ID   string `json:"id"`
	Name string `json:"name"`
	TeamLimits
	CreatedAt time.Time `json:"createdAt"`
}
