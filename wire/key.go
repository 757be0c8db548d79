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
