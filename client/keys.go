package client

import (
	"context"
	"net/http"
	"time"

	"github.com/sbxdev/sbx/wire"
)

// Key describes an API key, built from the server's [wire.Key]; its own
// JSON is what `sbx key ls --json` prints. The secret itself is shown only once, by
// [Client.CreateKey].
type Key struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Prefix is the start of the key, enough to recognise it.
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"createdAt"`
	// Admin keys may manage other keys.
	Admin bool `json:"admin"`
	// Team is the id of the key's team ("default" for the default team).
	Team string `json:"team"`
}

// NewKey is a key just created, with its secret (from [wire.Key]).
type NewKey struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Key is the secret, "e2b_…"; the server does not show it again.
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"createdAt"`
	Admin     bool      `json:"admin"`
	// Team is the id of the key's team ("default" for the default team).
	Team string `json:"team"`
}

// CreateKey creates an API key named name, a member of the default team.
func (c *Client) CreateKey(ctx context.Context, name string) (*NewKey, error) {
	return c.CreateTeamKey(ctx, KeyOptions{Name: name})
}

// KeyOptions describe a key to create (see [Client.CreateTeamKey]).
type KeyOptions struct {
	// Name is a name to recognise the key by.
	Name string
	// Team is the id or name of the key's team; empty is the default
	// team.
	Team string
	// Admin makes the key an admin of its team; an admin key of the
	// default team manages the server.
	Admin bool
}

// CreateTeamKey creates an API key as opts describes.
func (c *Client) CreateTeamKey(ctx context.Context, opts KeyOptions) (*NewKey, error) {
	var k wire.Key
	req := wire.NewKey{Name: opts.Name, Team: opts.Team}
	if opts.Admin {
		req.Role = "admin"
	}
	if _, err := c.do(ctx, http.MethodPost, "/sbx/v1/keys", nil, req, &k); err != nil {
		return nil, err
	}
	return &NewKey{ID: k.ID, Name: k.Name, Key: k.Key, CreatedAt: k.CreatedAt, Admin: k.Admin, Team: k.Team}, nil
}

// ListKeys returns every API key, without secrets.
func (c *Client) ListKeys(ctx context.Context) ([]Key, error) {
	var list []wire.Key
	if _, err := c.do(ctx, http.MethodGet, "/sbx/v1/keys", nil, nil, &list); err != nil {
		return nil, err
	}
	keys := make([]Key, 0, len(list))
	for _, k := range list {
		keys = append(keys, Key{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt, Admin: k.Admin, Team: k.Team})
	}
	return keys, nil
}

// DeleteKey revokes the API key with the given ID.
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	if id == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/sbx/v1/keys/"+escape(id), nil, nil, nil)
	return err
}

// TeamAPIKey is a key of the caller's team, as E2B's GET /api-keys lists
// it: named, masked, never with its secret.
type TeamAPIKey struct {
	ID        string                        `json:"id"`
	Name      string                        `json:"name"`
	Mask      wire.IdentifierMaskingDetails `json:"mask"`
	CreatedAt time.Time                     `json:"createdAt"`
}

// CreatedTeamAPIKey is a key just made by [Client.CreateTeamAPIKey], with
// its secret, which the server does not show again.
type CreatedTeamAPIKey struct {
	TeamAPIKey
	Key string `json:"key"`
}

// ListTeamAPIKeys lists the keys of the client's own team (GET /api-keys).
func (c *Client) ListTeamAPIKeys(ctx context.Context) ([]TeamAPIKey, error) {
	var list []wire.TeamAPIKey
	if _, err := c.do(ctx, http.MethodGet, "/api-keys", nil, nil, &list); err != nil {
		return nil, err
	}
	out := make([]TeamAPIKey, 0, len(list))
	for _, k := range list {
		out = append(out, TeamAPIKey{ID: k.ID, Name: k.Name, Mask: k.Mask, CreatedAt: k.CreatedAt})
	}
	return out, nil
}

// CreateTeamAPIKey makes a member key of the client's own team named name
// (POST /api-keys); the client's key must be an admin of the team.
func (c *Client) CreateTeamAPIKey(ctx context.Context, name string) (*CreatedTeamAPIKey, error) {
	var k wire.CreatedTeamAPIKey
	if _, err := c.do(ctx, http.MethodPost, "/api-keys", nil, wire.NewTeamAPIKey{Name: name}, &k); err != nil {
		return nil, err
	}
	return &CreatedTeamAPIKey{TeamAPIKey: TeamAPIKey{ID: k.ID, Name: k.Name, Mask: k.Mask, CreatedAt: k.CreatedAt}, Key: k.Key}, nil
}

// RenameTeamAPIKey names key id of the client's team name (PATCH
// /api-keys/{id}).
func (c *Client) RenameTeamAPIKey(ctx context.Context, id, name string) error {
	if id == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodPatch, "/api-keys/"+escape(id), nil, wire.UpdateTeamAPIKey{Name: name}, nil)
	return err
}

// DeleteTeamAPIKey revokes key id of the client's team (DELETE
// /api-keys/{id}): it is refused at once, and the requests it has open
// end.
func (c *Client) DeleteTeamAPIKey(ctx context.Context, id string) error {
	if id == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/api-keys/"+escape(id), nil, nil, nil)
	return err
}
