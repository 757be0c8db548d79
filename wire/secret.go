package wire

import "time"

// NewSecret is the body of POST /secrets (E2B's NewSecret).
type NewSecret struct {
	// Name is 1-128 of [a-zA-Z0-9_-], lower-cased before storage; the
	// sec_ prefix is reserved for ids.
	Name string `json:"name"`
	// Value is write-only: no answer carries it.
	Value    string            `json:"value"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// SecretUpdate is the body of POST /secrets/{secretID} (E2B's
// SecretUpdate): a new value, and metadata that replaces the stored one
// when present.
type SecretUpdate struct {
	Value    string            `json:"value"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Secret is a secret's metadata (E2B's Secret); never its value.
type Secret struct {
	SecretID       string            `json:"secretID"`
	Name           string            `json:"name"`
	CurrentVersion int64             `json:"currentVersion"`
	Metadata       map[string]string `json:"metadata"`
	CreatedAt      time.Time         `json:"createdAt"`
	UpdatedAt      time.Time         `json:"updatedAt"`
}
