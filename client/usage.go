package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/sbxdev/sbx/wire"
)

// UsageReport is what a team's sandboxes used, in all and by sandbox or
// by day.
type UsageReport = wire.UsageReport

// UsageRecord is one line of a UsageReport.
type UsageRecord = wire.UsageRecord

// UsageOptions select what [Client.Usage] sums.
type UsageOptions struct {
	// TeamID is the team (default: the key's; another needs an admin
	// key).
	TeamID string
	// Since and Until keep the UTC days that overlap [Since, Until);
	// zero: unbounded.
	Since, Until time.Time
	// By is "sandbox", "day" or "" (the total only).
	By string
}

// Usage returns what the sandboxes of a team used as sbx serve meters it:
// reserved and used CPU, memory, disk, kept per sandbox and UTC day.
func (c *Client) Usage(ctx context.Context, opts *UsageOptions) (*UsageReport, error) {
	if opts == nil {
		opts = &UsageOptions{}
	}
	q := url.Values{}
	if opts.TeamID != "" {
		q.Set("team", opts.TeamID)
	}
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.UTC().Format(time.RFC3339))
	}
	if !opts.Until.IsZero() {
		q.Set("until", opts.Until.UTC().Format(time.RFC3339))
	}
	if opts.By != "" {
		q.Set("by", opts.By)
	}
	var out UsageReport
	if _, err := c.do(ctx, http.MethodGet, "/sbx/v1/usage", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
