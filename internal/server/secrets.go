package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/identity"
	"github.com/sbxdev/sbx/internal/secret"
	"github.com/sbxdev/sbx/internal/store"
)

// openSecrets loads the server's secret keys and seals again, with the
// current key, every value an old key sealed (a rotation; see package
// secret).
func openSecrets(ctx context.Context, dir string, db *store.DB, log *slog.Logger) (*secret.Keyring, error) {
	k, err := secret.Open(dir)
	if err != nil {
		return nil, err
	}
	all, err := db.AllSecrets(ctx)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, sec := range all {
		if !k.Stale(sec.Sealed) {
			continue
		}
		v, err := k.Unseal(sec.ID, sec.Sealed)
		if err != nil {
			return nil, fmt.Errorf("secrets: %w", err)
		}
		sec.Sealed = k.Seal(sec.ID, v)
		if err := db.UpdateSecret(ctx, sec, sec.Version); err != nil {
			return nil, fmt.Errorf("secrets: seal again: %w", err)
		}
		n++
	}
	if n > 0 {
		log.Info("secrets sealed again with the current key", "count", n)
	}
	return k, nil
}

// secretSource gives the egress proxy the secrets of a sandbox's team.
type secretSource struct {
	db   *store.DB
	keys *secret.Keyring
	ids  *identity.Issuer
}

// Token mints a workload identity token of sandbox sandboxID, from the
// definition named name its create registered (E2B's iam.tokens); l7
// calls it per request of a rule that names the token.
func (s secretSource) Token(ctx context.Context, sandboxID, name string) (string, error) {
	sb, err := s.db.GetSandbox(ctx, sandboxID)
	if err != nil {
		return "", err
	}
	def, ok := sb.Life.IAMTokens[name]
	if !ok {
		return "", errdefs.New(errdefs.ErrNotFound, "sandbox %s registered no identity token %q", sandboxID, name)
	}
	team := sb.Team
	if team == store.DefaultTeamID {
		team = "" // "default", the id the API answers for it
	}
	return s.ids.Mint(identity.Subject{SandboxID: sb.ID, Team: team}, def.Audience, time.Now())
}

func (s secretSource) Secret(ctx context.Context, sandboxID, name string) (string, error) {
	sb, err := s.db.GetSandbox(ctx, sandboxID)
	if err != nil {
		return "", err
	}
	sec, err := s.db.GetSecret(ctx, sb.Team, strings.ToLower(name))
	if err != nil {
		return "", err
	}
	return s.keys.Unseal(sec.ID, sec.Sealed)
}
