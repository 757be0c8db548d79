package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/sbxdev/sbx/wire"
)

// DefaultURL is the server address [FromEnv] uses when SBX_URL is unset.
const DefaultURL = "http://127.0.0.1:49982"

// Environment variables read by [FromEnv].
const (
	EnvURL    = "SBX_URL"
	EnvAPIKey = "SBX_API_KEY"
)

// apiKeyHeader carries the API key on control-plane requests.
const apiKeyHeader = "X-API-Key"

// Client is a connection to one sbx server. It is safe for concurrent use.
// Create it with [New] or [FromEnv].
type Client struct {
	baseURL   *url.URL
	apiKey    string
	http      *http.Client
	userAgent string
}

// Option configures a [Client].
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc instead of a
// client of its own. Data-plane streams (process output) last as long as the
// process, so hc should not set a Timeout; bound calls with contexts instead.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
	}
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client for the server at baseURL (such as
// "http://127.0.0.1:49982") that authenticates with apiKey ("e2b_…"). A
// baseURL that does not parse is reported by the first call.
func New(baseURL, apiKey string, opts ...Option) *Client {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		u = &url.URL{Scheme: "invalid", Opaque: baseURL}
	}
	c := &Client{
		baseURL:   u,
		apiKey:    apiKey,
		http:      &http.Client{Transport: defaultTransport()},
		userAgent: "sbx-go-client",
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// FromEnv returns a client configured from the environment: SBX_URL (default
// [DefaultURL]) and SBX_API_KEY, which must be set.
func FromEnv(opts ...Option) (*Client, error) {
	base := os.Getenv(EnvURL)
	if base == "" {
		base = DefaultURL
	}
	if err := ValidateURL(base); err != nil {
		return nil, fmt.Errorf("sbx: %s: %w", EnvURL, err)
	}
	key := os.Getenv(EnvAPIKey)
	if key == "" {
		return nil, fmt.Errorf("sbx: %s is not set", EnvAPIKey)
	}
	return New(base, key, opts...), nil
}

// ValidateURL reports whether base is usable as a server address: an
// absolute http or https URL.
func ValidateURL(base string) error {
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("server URL %q: scheme must be http or https", base)
	}
	if u.Host == "" {
		return fmt.Errorf("server URL %q has no host", base)
	}
	return nil
}

// BaseURL returns the server address the client talks to.
func (c *Client) BaseURL() string { return c.baseURL.String() }

// endpoint returns the absolute URL of path (which may carry a query).
func (c *Client) endpoint(path string, query url.Values) string {
	u := *c.baseURL
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = query.Encode()
	return u.String()
}

// response is what do hands back when the caller wants headers.
type response struct {
	header http.Header
	status int
}

// do sends a control-plane request. in, when not nil, is the JSON body; out,
// when not nil, receives the decoded JSON response. Any status of 400 or
// above becomes an *APIError.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) (*response, error) {
	if c.baseURL.Scheme != "http" && c.baseURL.Scheme != "https" {
		return nil, fmt.Errorf("sbx: invalid server URL %q", c.baseURL.Opaque)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("sbx: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path, query), body)
	if err != nil {
		return nil, fmt.Errorf("sbx: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sbx: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return nil, decodeAPIError(resp)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return nil, fmt.Errorf("sbx: %s %s: decode response: %w", method, path, err)
		}
	}
	return &response{header: resp.Header, status: resp.StatusCode}, nil
}

// decodeAPIError reads an E2B error body; a body that is not one still gives
// an *APIError carrying the status and a bounded piece of the text.
func decodeAPIError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &APIError{StatusCode: resp.StatusCode}
	var body wire.Error
	if json.Unmarshal(raw, &body) == nil && body.Message != "" {
		e.Message = body.Message
	} else {
		e.Message = strings.TrimSpace(string(raw))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	return e
}

// Health reports whether the server is up and ready: nil once GET /health
// answers 200.
func (c *Client) Health(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/health", nil, nil, nil)
	return err
}

var errNoID = errors.New("sbx: empty id")

// escape makes id safe as one path segment.
func escape(id string) string { return url.PathEscape(id) }

// authorize sets the headers every control-plane request carries: the API
// key and the User-Agent.
func (c *Client) authorize(req *http.Request) {
	if c.apiKey != "" {
		req.Header.Set(apiKeyHeader, c.apiKey)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
}

// openStream sends a bodiless request to a route that answers a stream of
// JSON lines and returns the open response; an error status is an
// *APIError, other errors say what was asked. The caller closes the body.
func (c *Client) openStream(ctx context.Context, what, method, path string, query url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path, query), nil)
	if err != nil {
		return nil, fmt.Errorf("sbx: %s: %w", what, err)
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sbx: %s: %w", what, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeAPIError(resp)
	}
	return resp, nil
}
