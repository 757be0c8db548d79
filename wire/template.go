package wire

import (
	"encoding/json"
	"time"
)

// Template is one template of GET /templates (E2B's Template), and what
// POST /sbx/v1/templates/import returns.
type Template struct {
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

// TemplateAlias is GET /templates/aliases/{alias}.
type TemplateAlias struct {
	TemplateID string `json:"templateID"`
	Public     bool   `json:"public"`
}

// TemplateSettings are the settable parts of a template (the body of
// PATCH /sbx/v1/templates/{name}, and part of an import's). Absent fields
// are left as they are.
type TemplateSettings struct {
	// StartCmd is a shell command line (run with /bin/sh -c), as E2B's
	// startCmd; "" removes the start command (an import's image command
	// included).
	StartCmd *string `json:"startCmd,omitempty"`
	// ReadyCmd is a shell command that must exit 0; "" removes it.
	ReadyCmd *string `json:"readyCmd,omitempty"`
	// ReadyPort is a TCP port that must accept connections; 0 removes it.
	ReadyPort *int `json:"readyPort,omitempty"`
	// ReadyTimeout is in seconds; 0 is the server's default.
	ReadyTimeout *int `json:"readyTimeout,omitempty"`
	// Env replaces the environment defaults.
	Env map[string]string `json:"env,omitempty"`
	// Workdir is the default working directory, User the default user.
	Workdir *string `json:"workdir,omitempty"`
	User    *string `json:"defaultUser,omitempty"`
	// CPUCount and MemoryMB are the default limits; 0 leaves them to the
	// server.
	CPUCount *float64 `json:"cpuCount,omitempty"`
	MemoryMB *int64   `json:"memoryMB,omitempty"`
}

// ImportRequest is the body of POST /sbx/v1/templates/import.
type ImportRequest struct {
	Name string `json:"name"`
	// Source is "registry" (Ref names the image), "tarball" or "layout"
	// (Path is a path on the server).
	Source string `json:"source"`
	Ref    string `json:"ref,omitempty"`
	Path   string `json:"path,omitempty"`
	// Insecure lets the server fetch from the registry over plain HTTP.
	Insecure bool `json:"insecure,omitempty"`
	TemplateSettings
}

// TemplateDetail is GET /sbx/v1/templates/{name}: everything sbx knows of
// a template.
type TemplateDetail struct {
	TemplateID string    `json:"templateID"`
	CreatedAt  time.Time `json:"createdAt"`
	// Source says where it came from (an image reference or path, or how
	// it was built).
	Source string `json:"source,omitempty"`
	// SizeBytes is the apparent size of the root filesystem's files;
	// DiskBytes what they take on disk (allocated blocks, hard links once).
	// Sandboxes share this one copy: each adds only its own writes.
	SizeBytes int64 `json:"sizeBytes"`
	DiskBytes int64 `json:"diskBytes"`
	// Layers are the image layers it was flattened from.
	Layers []TemplateLayer `json:"layers"`
	// BuildLayers and Base describe a built template: its layers (build
	// cache keys), uppermost first, over Base's root filesystem.
	BuildLayers []string `json:"buildLayers,omitempty"`
	Base        string   `json:"base,omitempty"`
	User        string   `json:"defaultUser"`
	Env         []string `json:"env"`
	// Workdir is the default working directory of commands.
	Workdir   string   `json:"workdir,omitempty"`
	StartCmd  []string `json:"startCmd"`
	ReadyCmd  string   `json:"readyCmd,omitempty"`
	ReadyPort int      `json:"readyPort,omitempty"`
	// ReadyTimeout is the template's own, in seconds (0: the server's).
	ReadyTimeout int `json:"readyTimeout,omitempty"`
	// CPUCount and MemoryMB are what a sandbox gets by default;
	// CPUCountSet/MemoryMBSet say whether the template sets them (else
	// they are the server's defaults).
	CPUCount    float64 `json:"cpuCount"`
	MemoryMB    int64   `json:"memoryMB"`
	CPUCountSet bool    `json:"cpuCountSet"`
	MemoryMBSet bool    `json:"memoryMBSet"`
	// Sandboxes counts the sandboxes (not failed) made from it; it cannot
	// be deleted while this is not zero.
	Sandboxes int `json:"sandboxes"`
}

// TemplateLayer is one image layer a template was flattened from.
type TemplateLayer struct {
	Digest    string `json:"digest"`
	SizeBytes int64  `json:"sizeBytes"`
}

// TemplateBuildRequest is the body of POST /v3/templates (E2B's template
// builder, step 1).
type TemplateBuildRequest struct {
	Name     string   `json:"name"`
	Alias    string   `json:"alias"`
	Tags     []string `json:"tags"`
	CPUCount *int     `json:"cpuCount"`
	MemoryMB *int64   `json:"memoryMB"`
}

// TemplateBuildResponse is POST /v3/templates's response.
type TemplateBuildResponse struct {
	TemplateID string   `json:"templateID"`
	BuildID    string   `json:"buildID"`
	Aliases    []string `json:"aliases"`
	Names      []string `json:"names"`
	Tags       []string `json:"tags"`
	Public     bool     `json:"public"`
}

// TemplateFiles is GET /templates/{templateID}/files/{hash}: whether the
// files of a COPY step are cached and, if not, where to upload them.
type TemplateFiles struct {
	Present bool              `json:"present"`
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// TemplateBuildStep is one step of a TemplateBuildStart.
type TemplateBuildStep struct {
	// Type is RUN, COPY, ENV, WORKDIR or USER.
	Type      string   `json:"type"`
	Args      []string `json:"args"`
	FilesHash string   `json:"filesHash"`
	Force     bool     `json:"force"`
}

// TemplateBuildStart is the body of POST
// /v2/templates/{templateID}/builds/{buildID}: the steps, which start the
// build.
type TemplateBuildStart struct {
	FromImage    string `json:"fromImage"`
	FromTemplate string `json:"fromTemplate"`
	// FromImageRegistry (credentials) is refused; it is kept raw to tell
	// absent from null.
	FromImageRegistry json.RawMessage     `json:"fromImageRegistry"`
	StartCmd          *string             `json:"startCmd"`
	ReadyCmd          *string             `json:"readyCmd"`
	Steps             []TemplateBuildStep `json:"steps"`
	Force             bool                `json:"force"`
}

// BuildLogEntry is one log line of a TemplateBuildInfo.
type BuildLogEntry struct {
	Timestamp time.Time `json:"timestamp"`
	Level     string    `json:"level"`
	Message   string    `json:"message"`
	// Step is E2B's step name: "base", then "1", "2"...
	Step string `json:"step,omitempty"`
}

// BuildReason says why an E2B-style build failed.
type BuildReason struct {
	Message    string          `json:"message"`
	Step       string          `json:"step,omitempty"`
	LogEntries []BuildLogEntry `json:"logEntries"`
}

// TemplateBuildInfo is GET /templates/{templateID}/builds/{buildID}/status.
type TemplateBuildInfo struct {
	BuildID    string          `json:"buildID"`
	TemplateID string          `json:"templateID"`
	Status     string          `json:"status"`
	LogEntries []BuildLogEntry `json:"logEntries"`
	Logs       []string        `json:"logs"`
	Reason     *BuildReason    `json:"reason,omitempty"`
}

// Build is a Dockerfile build as POST /sbx/v1/templates/builds and GET
// /sbx/v1/templates/builds/{buildID} return it.
type Build struct {
	BuildID    string     `json:"buildID"`
	TemplateID string     `json:"templateID"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"createdAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// Error, Step and ExitCode describe a failed build: the message, the
	// 1-based step that failed and, for RUN, the command's exit code.
	Error    string `json:"error,omitempty"`
	Step     int    `json:"step,omitempty"`
	ExitCode int    `json:"exitCode,omitempty"`
	// Logs is the number of log lines so far.
	Logs int `json:"logs"`
}

// BuildEvent is one line of GET /sbx/v1/templates/builds/{buildID}/logs
// (JSON lines): a log line, or the last line (kind "end") with the outcome.
type BuildEvent struct {
	Time  time.Time `json:"timestamp"`
	Level string    `json:"level"`
	// Step is the 1-based step the line belongs to (0: the whole build).
	Step int `json:"step"`
	// Kind is "step" (a step begins), "cached" (its layer was reused),
	// "output" (a line a RUN command printed), "info", "error", or "end"
	// (the last line, with Status and, for a failed RUN, ExitCode).
	Kind     string `json:"kind"`
	Message  string `json:"message"`
	Status   string `json:"status,omitempty"`
	ExitCode int    `json:"exitCode,omitempty"`
}

// BuiltinBuildLine is one line of POST /sbx/v1/templates/builtin/{name}
// (JSON lines): a progress message (kind "log"), or the last line (kind
// "end") with the outcome.
type BuiltinBuildLine struct {
	Kind    string `json:"kind"`
	Message string `json:"message,omitempty"`
	// Status is "ready" or "error" on the last line; Error says why a
	// build failed.
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

// AssignTemplateTags is POST /templates/tags: point tags at the build that
// Target ("name:tag", or "name" for its default tag) names.
type AssignTemplateTags struct {
	Target string   `json:"target"`
	Tags   []string `json:"tags"`
}

// AssignedTemplateTags answers POST /templates/tags: the tags assigned and
// the build they point at.
type AssignedTemplateTags struct {
	Tags    []string `json:"tags"`
	BuildID string   `json:"buildID"`
}

// DeleteTemplateTags is DELETE /templates/tags: remove tags of template
// Name.
type DeleteTemplateTags struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// TemplateTag is one element of GET /templates/{templateID}/tags.
type TemplateTag struct {
	Tag       string    `json:"tag"`
	BuildID   string    `json:"buildID"`
	CreatedAt time.Time `json:"createdAt"`
}
