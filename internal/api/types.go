package api

import "time"

// The E2B wire types sbx serves, with the field names the e2b SDKs use.

type newSandbox struct {
	TemplateID string            `json:"templateID"`
	Timeout    *int64            `json:"timeout,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	EnvVars    map[string]string `json:"envVars,omitempty"`
	// CPUCount and MemoryMB are sbx extensions (E2B's create body has
	// none; the names are E2B's own for a sandbox's limits): they override
	// the template's and the server's defaults within the server's
	// maxima.
	CPUCount  *float64        `json:"cpuCount,omitempty"`
	MemoryMB  *int64          `json:"memoryMB,omitempty"`
	AutoPause *bool           `json:"autoPause,omitempty"`
	Secure    *bool           `json:"secure,omitempty"`
	Network   *sandboxNetwork `json:"network,omitempty"`
	// Egress policy (network.go), with Network's allowOut/denyOut.
	AllowInternetAccess *bool `json:"allow_internet_access,omitempty"`
	// Runtime is an sbx extension: the runtime to run on ("runc",
	// "runsc"); empty means the server's default.
	Runtime string `json:"runtime,omitempty"`
	// Lifecycle fields (manager_lifecycle.go): E2B's autoPauseMemory and
	// autoResume, and sbx's lifecycle ("persistent") and idlePause.
	AutoPauseMemory *bool       `json:"autoPauseMemory,omitempty"`
	AutoResume      *autoResume `json:"autoResume,omitempty"`
	Lifecycle       string      `json:"lifecycle,omitempty"`
	IdlePause       *int64      `json:"idlePause,omitempty"`
}

type autoResume struct {
	Enabled bool `json:"enabled"`
}

type sandboxBody struct {
	SandboxID          string  `json:"sandboxID"`
	TemplateID         string  `json:"templateID"`
	ClientID           string  `json:"clientID"`
	EnvdVersion        string  `json:"envdVersion"`
	EnvdAccessToken    string  `json:"envdAccessToken,omitempty"`
	Domain             *string `json:"domain"`
	TrafficAccessToken *string `json:"trafficAccessToken"`
	Alias              string  `json:"alias,omitempty"`
	// Runtime is an sbx extension: the runtime the sandbox runs on.
	Runtime string `json:"runtime,omitempty"`
}

type listedSandbox struct {
	SandboxID   string            `json:"sandboxID"`
	TemplateID  string            `json:"templateID"`
	Alias       string            `json:"alias,omitempty"`
	ClientID    string            `json:"clientID"`
	StartedAt   time.Time         `json:"startedAt"`
	EndAt       time.Time         `json:"endAt"`
	CPUCount    int64             `json:"cpuCount"` // E2B's schema: an integer
	MemoryMB    int64             `json:"memoryMB"`
	DiskSizeMB  int64             `json:"diskSizeMB"`
	EnvdVersion string            `json:"envdVersion"`
	Metadata    map[string]string `json:"metadata"`
	State       string            `json:"state"`
	// Runtime is an sbx extension: the runtime the sandbox runs on.
	Runtime string `json:"runtime"`
	// PauseKind (sbx) tells how a paused sandbox was paused: frozen,
	// memory or filesystem.
	PauseKind string `json:"pauseKind,omitempty"`
}

type sandboxDetail struct {
	listedSandbox
	EnvdAccessToken string          `json:"envdAccessToken,omitempty"`
	Domain          *string         `json:"domain"`
	Lifecycle       lifecycle       `json:"lifecycle"`
	Error           string          `json:"error,omitempty"`
	Network         *sandboxNetwork `json:"network,omitempty"`
	// Egress policy (network.go); null when not set.
	AllowInternetAccess *bool `json:"allowInternetAccess"`
}

type lifecycle struct {
	AutoResume bool   `json:"autoResume"`
	OnTimeout  string `json:"onTimeout"`
	// sbx extensions.
	Persistent bool  `json:"persistent"`
	IdlePause  int64 `json:"idlePause,omitempty"`
}

type timeoutRequest struct {
	Timeout *int64 `json:"timeout"`
}

type connectRequest struct {
	Timeout *int64 `json:"timeout,omitempty"`
	Memory  *bool  `json:"memory,omitempty"`
}

type refreshRequest struct {
	Duration *int64 `json:"duration,omitempty"`
}

type templateBody struct {
	TemplateID  string    `json:"templateID"`
	BuildID     string    `json:"buildID"`
	Aliases     []string  `json:"aliases"`
	Names       []string  `json:"names"`
	CPUCount    int64     `json:"cpuCount"`
	MemoryMB    int64     `json:"memoryMB"`
	DiskSizeMB  int64     `json:"diskSizeMB"`
	SizeBytes   int64     `json:"sizeBytes"`
	Public      bool      `json:"public"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	BuildStatus string    `json:"buildStatus"`
	EnvdVersion string    `json:"envdVersion"`
}

type keyBody struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Key       string    `json:"key,omitempty"`
	Prefix    string    `json:"prefix"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"createdAt"`
}

type newKey struct {
	Name string `json:"name"`
}
