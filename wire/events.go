package wire

import "time"

// The lifecycle event types, E2B's names; sandbox.lifecycle.failed is
// sbx's (a sandbox whose box died).
const (
	EventCreated      = "sandbox.lifecycle.created"
	EventUpdated      = "sandbox.lifecycle.updated"
	EventPaused       = "sandbox.lifecycle.paused"
	EventResumed      = "sandbox.lifecycle.resumed"
	EventCheckpointed = "sandbox.lifecycle.checkpointed"
	EventKilled       = "sandbox.lifecycle.killed"
	EventFailed       = "sandbox.lifecycle.failed"
)

// EventTypes lists every event type, in lifecycle order.
var EventTypes = []string{EventCreated, EventUpdated, EventPaused, EventResumed, EventCheckpointed, EventKilled, EventFailed}

// SandboxEvent is a lifecycle event of a sandbox, as GET /events/sandboxes
// lists it and as a webhook delivery's body carries it (E2B's shape). ID
// is the idempotency id of its deliveries: a receiver that sees one twice
// has seen a retry.
type SandboxEvent struct {
	ID      string `json:"id"`
	Version string `json:"version"` // "v1"
	Type    string `json:"type"`
	// EventData says more about the move: why, and from which state.
	EventData *SandboxEventData `json:"eventData"`
	SandboxID string            `json:"sandboxId"`
	// SandboxExecutionID identifies the run of the sandbox; sbx has no
	// separate runs, so it is the sandbox id.
	SandboxExecutionID string `json:"sandboxExecutionId"`
	SandboxTemplateID  string `json:"sandboxTemplateId"`
	// SandboxBuildID is the template's build; sbx's templates are their
	// own builds, so it is the template id.
	SandboxBuildID string    `json:"sandboxBuildId"`
	SandboxTeamID  string    `json:"sandboxTeamId"`
	Timestamp      time.Time `json:"timestamp"`
}

// SandboxEventData is a SandboxEvent's details; each field is set where it
// applies.
type SandboxEventData struct {
	// Reason is what caused the event: "request" (an API call),
	// "timeout", "idle", "box exited", "restart" (found so when sbx serve
	// started), or the failure's message.
	Reason string `json:"reason,omitempty"`
	// State and PreviousState are the sandbox's stored states after and
	// before the move (none for updated and checkpointed).
	State         string `json:"state,omitempty"`
	PreviousState string `json:"previousState,omitempty"`
	// PauseKind is how a paused sandbox was paused: frozen, memory or
	// filesystem.
	PauseKind string `json:"pauseKind,omitempty"`
	// EndAt is an updated sandbox's new end of life; Timeout is set
	// NoTimeout is true, and EndAt absent, when the time limit was removed.
	EndAt     *time.Time `json:"endAt,omitempty"`
	NoTimeout bool       `json:"noTimeout,omitempty"`
	// Network is true on the event of a changed egress policy.
	Network bool `json:"network,omitempty"`
	// SnapshotID is a checkpointed sandbox's new snapshot.
	SnapshotID string `json:"snapshotId,omitempty"`
}

// NewWebhook is the body of POST /events/webhooks.
type NewWebhook struct {
	Name   string   `json:"name"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
	// Enabled defaults to true.
	Enabled *bool `json:"enabled,omitempty"`
	// SignatureSecret signs deliveries (the e2b-signature header); it is
	// never returned.
	SignatureSecret string `json:"signatureSecret"`
}

// WebhookUpdate is the body of PATCH /events/webhooks/{webhookID}: the
// fields present are changed.
type WebhookUpdate struct {
	Name            *string  `json:"name,omitempty"`
	URL             *string  `json:"url,omitempty"`
	Events          []string `json:"events,omitempty"`
	Enabled         *bool    `json:"enabled,omitempty"`
	SignatureSecret *string  `json:"signatureSecret,omitempty"`
}

// Webhook is a registered webhook, without its secret.
type Webhook struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Enabled   bool      `json:"enabled"`
	CreatedAt time.Time `json:"createdAt"`
}

// WebhookDelivery is one event's delivery to a webhook, as GET
// /events/webhooks/{webhookID}/deliveries lists it (an sbx extension).
type WebhookDelivery struct {
	EventID       string     `json:"eventId"`
	Type          string     `json:"type"`
	SandboxID     string     `json:"sandboxId"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"` // pending only
	DeliveredAt   *time.Time `json:"deliveredAt,omitempty"`
	FailedAt      *time.Time `json:"failedAt,omitempty"` // given up on
	LastError     string     `json:"lastError,omitempty"`
}

// AuditRecord is one entry of GET /sbx/v1/audit: who (key, team) did what
// (method, route) to which object, when, from where, and the status
// answered.
type AuditRecord struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	TeamID   string    `json:"teamId"`
	KeyID    string    `json:"keyId,omitempty"` // absent: no valid key
	KeyName  string    `json:"keyName,omitempty"`
	Admin    bool      `json:"admin"`
	Method   string    `json:"method"`
	Route    string    `json:"route"`
	ObjectID string    `json:"objectId,omitempty"`
	Status   int       `json:"status"`
	Remote   string    `json:"remoteAddr"`
}
