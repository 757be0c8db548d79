package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sbxdev/sbx/wire"
)

// SandboxMetric is one resource sample of a sandbox: its CPU, memory and
// disk use at Timestamp.
type SandboxMetric = wire.SandboxMetric

// MetricsOptions bound the samples SandboxMetrics returns; zero times
// leave the server's defaults (from the sandbox's creation to now).
type MetricsOptions struct {
	Start, End time.Time
}

// SandboxMetrics returns sandbox id's resource samples, oldest first. sbx
// serve takes one every --metrics-interval while the sandbox runs and
// keeps them while its record exists (paused and failed sandboxes too).
func (c *Client) SandboxMetrics(ctx context.Context, id string, opts *MetricsOptions) ([]SandboxMetric, error) {
	if id == "" {
		return nil, errNoID
	}
	q := url.Values{}
	if opts != nil && !opts.Start.IsZero() {
		q.Set("start", strconv.FormatInt(opts.Start.Unix(), 10))
	}
	if opts != nil && !opts.End.IsZero() {
		q.Set("end", strconv.FormatInt(opts.End.Unix(), 10))
	}
	var out []SandboxMetric
	if _, err := c.do(ctx, http.MethodGet, "/sandboxes/"+escape(id)+"/metrics", q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}
