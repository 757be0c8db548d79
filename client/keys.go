package client

import (
	"context"
	"net/http"
	"time"
)

// Key describes an API key. The secret itself is shown only once, by
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

// NewKey is a key just created, with its secret.
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
	k := &NewKey{}
	body := struct {
		Name string `json:"name"`
	}{name}
	if _, err := c.do(ctx, http.MethodPost, "/sbx/v1/keys", nil, body, k); err != nil {
		return nil, err
	}
	return k, nil
}

// ListKeys returns every API key, without secrets.
func (c *Client) ListKeys(ctx context.Context) ([]Key, error) {
	keys := []Key{}
	if _, err := c.do(ctx, http.MethodGet, "/sbx/v1/keys", nil, nil, &keys); err != nil {
		return nil, err
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
