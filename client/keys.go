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
}

// NewKey is a key just created, with its secret (from [wire.Key]).
type NewKey struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Key is the secret, "e2b_…"; the server does not show it again.
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"createdAt"`
	Admin     bool      `json:"admin"`
}

// CreateKey creates an API key named name.
func (c *Client) CreateKey(ctx context.Context, name string) (*NewKey, error) {
	var k wire.Key
	if _, err := c.do(ctx, http.MethodPost, "/sbx/v1/keys", nil, wire.NewKey{Name: name}, &k); err != nil {
		return nil, err
	}
	return &NewKey{ID: k.ID, Name: k.Name, Key: k.Key, CreatedAt: k.CreatedAt, Admin: k.Admin}, nil
}

// ListKeys returns every API key, without secrets.
func (c *Client) ListKeys(ctx context.Context) ([]Key, error) {
	var list []wire.Key
	if _, err := c.do(ctx, http.MethodGet, "/sbx/v1/keys", nil, nil, &list); err != nil {
		return nil, err
	}
	keys := make([]Key, 0, len(list))
	for _, k := range list {
		keys = append(keys, Key{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt, Admin: k.Admin})
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
