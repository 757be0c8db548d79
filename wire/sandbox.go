package wire

import (
	"encoding/json"
	"time"
)

// NewSandbox is the body of POST /sandboxes and POST /v2/sandboxes.
type NewSandbox struct {
	TemplateID string `json:"templateID"`
	// Timeout is the time to live in seconds; 0 means no limit, absent
	// the server's default.
	Timeout  *int64            `json:"timeout,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	EnvVars  map[string]string `json:"envVars,omitempty"`
	// CPUCount and MemoryMB are sbx extensions (E2B's create body has
	// none; the names are E2B's own for a sandbox's limits): they override
	// the template's and the server's defaults within the server's
	// maxima.
	CPUCount  *float64        `json:"cpuCount,omitempty"`
	MemoryMB  *int64          `json:"memoryMB,omitempty"`
	AutoPause *bool           `json:"autoPause,omitempty"`
	Secure    *bool           `json:"secure,omitempty"`
	Network   *SandboxNetwork `json:"network,omitempty"`
	// AllowInternetAccess is the egress default, with Network's allowOut
	// and denyOut. E2B spells it in snake case here.
	AllowInternetAccess *bool `json:"allow_internet_access,omitempty"`
	// Runtime is an sbx extension: the runtime to run on ("runc",
	// "runsc"); empty means the server's default.
	Runtime string `json:"runtime,omitempty"`
	// AutoPauseMemory and AutoResume are E2B's; Lifecycle ("ephemeral",
	// "persistent") and IdlePause (seconds) are sbx's.
	AutoPauseMemory *bool       `json:"autoPauseMemory,omitempty"`
	AutoResume      *AutoResume `json:"autoResume,omitempty"`
	Lifecycle       string      `json:"lifecycle,omitempty"`
	IdlePause       *int64      `json:"idlePause,omitempty"`
	// VolumeMounts mounts volumes, by name, at absolute paths.
	VolumeMounts []SandboxVolumeMount `json:"volumeMounts,omitempty"`
	// IAM is E2B's workload identity: {"tokens": {NAME: {"audience",
	// "tokenType"}}}, the tokens the sandbox's network rules may name in
	// ${e2b.identity.tokens.NAME} placeholders. Kept raw.
	IAM json.RawMessage `json:"iam,omitempty"`
}

// AutoResume is E2B's autoResume object of a create request.
type AutoResume struct {
	Enabled bool `json:"enabled"`
}

// SandboxNetwork is E2B's SandboxNetworkConfig, the "network" object of a
// create request and of a sandbox's details.
type SandboxNetwork struct {
	// AllowPublicTraffic false makes the sandbox's ports reachable through
	// the proxy only with its traffic access token. Absent means true.
	AllowPublicTraffic *bool `json:"allowPublicTraffic,omitempty"`
	// AllowOut and DenyOut are the egress rules.
	AllowOut []string `json:"allowOut,omitempty"`
	DenyOut  []string `json:"denyOut,omitempty"`
	// EgressProxy (a SOCKS5 proxy: address, username, password; the
	// password is never answered) and Rules (per-domain header
	// transforms) are kept raw to tell absent from null.
	EgressProxy json.RawMessage `json:"egressProxy,omitempty"`
	Rules       json.RawMessage `json:"rules,omitempty"`
	// MaskRequestHost is the Host header requests to the sandbox's
	// ports carry ("${PORT}" is replaced by the port); empty: the host
	// they were sent to.
	MaskRequestHost string `json:"maskRequestHost,omitempty"`
	// HTTPSPorts are the sandbox's ports whose servers speak TLS.
	HTTPSPorts []int `json:"httpsPorts,omitempty"`
}

// Sandbox is a sandbox as create, connect and resume return it (E2B's
// Sandbox).
type Sandbox struct {
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

// ListedSandbox is one sandbox of GET /v2/sandboxes and GET /sandboxes
// (E2B's ListedSandbox).
type ListedSandbox struct {
	SandboxID  string    `json:"sandboxID"`
	TemplateID string    `json:"templateID"`
	Alias      string    `json:"alias,omitempty"`
	ClientID   string    `json:"clientID"`
	StartedAt  time.Time `json:"startedAt"`
	// EndAt is when the sandbox times out; the zero time means never.
	EndAt time.Time `json:"endAt"`
	// CPUCount is an integer, as in E2B's schema (fractions round up).
	CPUCount    int64             `json:"cpuCount"`
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
	// VolumeMounts are the volumes the sandbox mounts.
	VolumeMounts []SandboxVolumeMount `json:"volumeMounts,omitempty"`
}

// SandboxDetail is GET /sandboxes/{id} (E2B's SandboxDetail).
type SandboxDetail struct {
	ListedSandbox
	EnvdAccessToken string          `json:"envdAccessToken,omitempty"`
	Domain          *string         `json:"domain"`
	Lifecycle       Lifecycle       `json:"lifecycle"`
	Error           string          `json:"error,omitempty"`
	Network         *SandboxNetwork `json:"network,omitempty"`
	// AllowInternetAccess is the egress default as set; null when not set.
	AllowInternetAccess *bool `json:"allowInternetAccess"`
}

// Lifecycle is a sandbox's lifecycle policy in its details.
type Lifecycle struct {
	AutoResume bool `json:"autoResume"`
	// OnTimeout is "kill" or "pause".
	OnTimeout string `json:"onTimeout"`
	// Persistent and IdlePause (seconds) are sbx extensions.
	Persistent bool  `json:"persistent"`
	IdlePause  int64 `json:"idlePause,omitempty"`
}

// TimeoutRequest is the body of POST /sandboxes/{id}/timeout: seconds from
// now, 0 for no limit.
type TimeoutRequest struct {
	Timeout *int64 `json:"timeout"`
}

// RefreshRequest is the body of POST /sandboxes/{id}/refreshes.
type RefreshRequest struct {
	Duration *int64 `json:"duration,omitempty"`
}

// ConnectRequest is the body of POST /sandboxes/{id}/connect.
type ConnectRequest struct {
	Timeout *int64 `json:"timeout,omitempty"`
	// Memory false resumes a paused sandbox from its files only.
	Memory *bool `json:"memory,omitempty"`
}

// NetworkUpdate is E2B's SandboxNetworkUpdateConfig, the body of PUT
// /sandboxes/{id}/network: it replaces the egress rules; an omitted field
// is cleared.
type NetworkUpdate struct {
	AllowInternetAccess *bool           `json:"allow_internet_access,omitempty"`
	AllowOut            []string        `json:"allowOut,omitempty"`
	DenyOut             []string        `json:"denyOut,omitempty"`
	EgressProxy         json.RawMessage `json:"egressProxy,omitempty"`
	Rules               json.RawMessage `json:"rules,omitempty"`
}
