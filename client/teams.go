package client

import (
	"context"
	"net/http"

	"github.com/sbxdev/sbx/wire"
)

// Team is a team and its quotas ([wire.TeamInfo]); its JSON is what
// `sbx team ls --json` prints.
type Team = wire.TeamInfo

// TeamLimits are a team's quotas; 0 is no limit.
type TeamLimits = wire.TeamLimits

// CreateTeam creates team name with limits (admin keys of the default
// team only).
func (c *Client) CreateTeam(ctx context.Context, name string, limits TeamLimits) (*Team, error) {
	var t Team
	if _, err := c.do(ctx, http.MethodPost, "/sbx/v1/teams", nil, wire.NewTeam{Name: name, TeamLimits: limits}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListTeams returns every team.
func (c *Client) ListTeams(ctx context.Context) ([]Team, error) {
	var list []Team
	if _, err := c.do(ctx, http.MethodGet, "/sbx/v1/teams", nil, nil, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// SetTeam changes the limits of team ref (an id or name) that u sets.
func (c *Client) SetTeam(ctx context.Context, ref string, u wire.TeamUpdate) (*Team, error) {
	if ref == "" {
		return nil, errNoID
	}
	var t Team
	if _, err := c.do(ctx, http.MethodPatch, "/sbx/v1/teams/"+escape(ref), nil, u, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// DeleteTeam removes team ref (an id or name), which must hold no keys,
// sandboxes or snapshots.
func (c *Client) DeleteTeam(ctx context.Context, ref string) error {
	if ref == "" {
		return errNoID
	}
	_, err := c.do(ctx, http.MethodDelete, "/sbx/v1/teams/"+escape(ref), nil, nil, nil)
	return err
}
