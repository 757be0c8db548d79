package wire

import "time"

// SandboxLogEntry is one line of a sandbox's log, structured: its agent's
// log (what E2B's envd logs), with the line's key=value attributes as
// Fields.
type SandboxLogEntry struct {
	Timestamp time.Time         `json:"timestamp"`
	Level     string            `json:"level"` // debug, info, warn or error
	Message   string            `json:"message"`
	Fields    map[string]string `json:"fields"`
}

// SandboxLogsV2 is the answer of GET /v2/sandboxes/{id}/logs.
type SandboxLogsV2 struct {
	Logs []SandboxLogEntry `json:"logs"`
}

// SandboxLogLine is one line of a sandbox's log as text.
type SandboxLogLine struct {
	Timestamp time.Time `json:"timestamp"`
	Line      string    `json:"line"`
}

// SandboxLogs is the answer of E2B's older GET /sandboxes/{id}/logs: the
// same lines as text and structured.
type SandboxLogs struct {
	Logs       []SandboxLogLine  `json:"logs"`
	LogEntries []SandboxLogEntry `json:"logEntries"`
}
