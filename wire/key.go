package wire

import "time"

// NewKey is the body of POST /sbx/v1/keys.
type NewKey struct {
	Name string `json:"name"`
	// Team is the id or name of the team the key belongs to; empty is
	// the default team.
	Team string `json:"team,omitempty"`
	// Role is "admin" or "member" (the default).
	Role string `json:"role,omitempty"`
}

// Key is an API key as GET /sbx/v1/keys lists it and POST /sbx/v1/keys
// returns it; only the latter fills Key, the secret.
type Key struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Key       string    `json:"key,omitempty"`
	Prefix    string    `json:"prefix"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"createdAt"`
	// Team is the id of the key's team ("default" for the default team).
	Team string `json:"team"`
}

// IdentifierMaskingDetails is how E2B shows a key without revealing it:
// the key is Prefix followed by ValueLength characters, of which
// MaskedValuePrefix are the first and MaskedValueSuffix the last.
type IdentifierMaskingDetails struct {
	Prefix            string `json:"prefix"`
	ValueLength       int    `json:"valueLength"`
	MaskedValuePrefix string `json:"maskedValuePrefix"`
	MaskedValueSuffix string `json:"maskedValueSuffix"`
}

// TeamUser is a user of a team (E2B's createdBy). sbx has keys, not
// users: it never fills one.
type TeamUser struct {
	ID    string  `json:"id"`
	Email *string `json:"email"`
}

// TeamAPIKey is a key of the caller's team as GET /api-keys lists it
// (E2B's TeamAPIKey).
type TeamAPIKey struct {
	ID        string                   `json:"id"`
	Name      string                   `json:"name"`
	Mask      IdentifierMaskingDetails `json:"mask"`
	CreatedAt time.Time                `json:"createdAt"`
	CreatedBy *TeamUser                `json:"createdBy"`
	LastUsed  *time.Time               `json:"lastUsed"`
}

// CreatedTeamAPIKey is the answer to POST /api-keys (E2B's
// CreatedTeamAPIKey): the one time the key itself is shown.
type CreatedTeamAPIKey struct {
	ID        string                   `json:"id"`
	Key       string                   `json:"key"`
	Mask      IdentifierMaskingDetails `json:"mask"`
	Name      string                   `json:"name"`
	CreatedAt time.Time                `json:"createdAt"`
	CreatedBy *TeamUser                `json:"createdBy"`
	LastUsed  *time.Time               `json:"lastUsed"`
}

// NewTeamAPIKey is the body of POST /api-keys.
type NewTeamAPIKey struct {
	Name string `json:"name"`
}

// UpdateTeamAPIKey is the body of PATCH /api-keys/{apiKeyID}.
type UpdateTeamAPIKey struct {
	Name string `json:"name"`
}
