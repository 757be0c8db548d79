package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/sbxdev/sbx/wire"
)

// Secret is a secret's metadata; its value is write-only and no call
// returns it. Its JSON is what `sbx secret ls --json` prints.
type Secret = wire.Secret

// SecretPlaceholder is what a sandbox's network rules carry in place of
// secret name's value ([CreateOptions.Network]'s rules): sbx's egress
// proxy fills it in on the way out, so the value never enters the
// sandbox.
func SecretPlaceholder(name string) string { return "${e2b.secrets." + name + "}" }

// CreateSecret stores a new secret named name (lower-cased by the
// server) with value and metadata (nil for none).
func (c *Client) CreateSecret(ctx context.Context, name, value string, metadata map[string]string) (*Secret, error) {
	var s Secret
	if _, err := c.do(ctx, http.MethodPost, "/secrets", nil, wire.NewSecret{Name: name, Value: value, Metadata: metadata}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// UpdateSecret gives secret ref (its id or name) a new value, and
// metadata when not nil.
func (c *Client) UpdateSecret(ctx context.Context, ref, value string, metadata map[string]string) (*Secret, error) {
	if ref == "" {
		return nil, errNoID
	}
	var s Secret
	if _, err := c.do(ctx, http.MethodPost, "/secrets/"+escape(ref), nil, wire.SecretUpdate{Value: value, Metadata: metadata}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// GetSecret returns secret ref's (its id or name) metadata.
func (c *Client) GetSecret(ctx context.Context, ref string) (*Secret, error) {
	if ref == "" {
		return nil, errNoID
	}
	var s Secret
	if _, err := c.do(ctx, http.MethodGet, "/secrets/"+escape(ref), nil, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListSecrets returns every secret of the key's team, page by page.
func (c *Client) ListSecrets(ctx context.Context) ([]Secret, error) {
	var out []Secret
	next := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if next != "" {
			q.Set("nextToken", next)
		}
		var page []Secret
		resp, err := c.do(ctx, http.MethodGet, "/secrets", q, nil, &page)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		next = strings.TrimSpace(resp.header.Get("X-Next-Token"))
		if next == "" || len(page) == 0 {
			return out, nil
		}
	}
}

// DeleteSecret deletes secret ref (its id or name).
func (c *Client) DeleteSecret(ctx context.Context, ref string) error {
	if ref == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/secrets/"+escape(ref), nil, nil, nil)
	return err
}
