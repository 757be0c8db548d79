package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/wire"
)

// TestTeamAPIKeys drives E2B's /api-keys routes: a team's admin key
// lists, makes, renames and removes its own team's keys; a member key
// only lists them; another team's key is not found; a removed key is
// refused at once; bad bodies are 400.
func TestTeamAPIKeys(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	if err := s.db.CreateTeam(ctx, &store.Team{ID: "team-a", Name: "alpha", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, alphaAdmin, err := s.keys.CreateInTeam(ctx, "team-a", "alpha-admin", "", true)
	if err != nil {
		t.Fatal(err)
	}
	alphaMemberRec, alphaMember, err := s.keys.CreateInTeam(ctx, "team-a", "alpha-member", "", false)
	if err != nil {
		t.Fatal(err)
	}

	// A team admin makes a key: shown once, with E2B's mask of it.
	var made wire.CreatedTeamAPIKey
	decodeBody(t, s.do(t, "POST", "/api-keys", alphaAdmin, `{"name":"ci"}`), 201, &made)
	if !keyPattern.MatchString(made.Key) || made.Name != "ci" || made.ID == "" || made.CreatedAt.IsZero() {
		t.Fatalf("POST /api-keys = %+v", made)
	}
	wantMask := wire.IdentifierMaskingDetails{Prefix: "e2b_", ValueLength: 40, MaskedValuePrefix: made.Key[4:6], MaskedValueSuffix: made.Key[len(made.Key)-4:]}
	if made.Mask != wantMask {
		t.Errorf("mask = %+v, want %+v", made.Mask, wantMask)
	}
	rec, ok := s.keys.Verify(made.Key)
	if !ok || rec.Team != "team-a" || rec.Admin {
		t.Fatalf("the new key = %+v, %v; want a member of team-a", rec, ok)
	}

	// Lists: the team's keys only, without secrets, for members too.
	for _, key := range []string{alphaAdmin, alphaMember} {
		var list []wire.TeamAPIKey
		decodeBody(t, s.do(t, "GET", "/api-keys", key, ""), 200, &list)
		names := map[string]wire.TeamAPIKey{}
		for _, k := range list {
			names[k.Name] = k
		}
		if len(list) != 3 || names["ci"].Mask != wantMask || names["alpha-member"].ID != alphaMemberRec.ID {
			t.Errorf("GET /api-keys = %+v; want alpha's three keys", list)
		}
		if w := s.do(t, "GET", "/api-keys", key, ""); strings.Contains(w.Body.String(), made.Key[4:]) {
			t.Errorf("GET /api-keys shows a secret: %s", w.Body)
		}
	}
	var defaults []wire.TeamAPIKey
	decodeBody(t, s.do(t, "GET", "/api-keys", s.plainKey, ""), 200, &defaults)
	if len(defaults) != 2 {
		t.Errorf("the default team's keys = %+v; want admin and plain", defaults)
	}

	// Rename.
	if w := s.do(t, "PATCH", "/api-keys/"+made.ID, alphaAdmin, `{"name":"deploys"}`); w.Code != http.StatusOK {
		t.Fatalf("PATCH = %d %s", w.Code, w.Body)
	}
	if rec, _ := s.keys.Verify(made.Key); rec.Name != "deploys" {
		t.Errorf("after PATCH the key is named %q", rec.Name)
	}

	// Refusals.
	for _, tc := range []struct {
		name, method, path, key, body string
		status                        int
		msg                           string
	}{
		{"member creates", "POST", "/api-keys", alphaMember, `{"name":"x"}`, 403, "admin key of the team"},
		{"member renames", "PATCH", "/api-keys/" + made.ID, alphaMember, `{"name":"x"}`, 403, "admin key of the team"},
		{"member deletes", "DELETE", "/api-keys/" + made.ID, alphaMember, "", 403, "admin key of the team"},
		{"other team renames", "PATCH", "/api-keys/" + made.ID, s.adminKey, `{"name":"x"}`, 404, "not found"},
		{"other team deletes", "DELETE", "/api-keys/" + made.ID, s.adminKey, "", 404, "not found"},
		{"default's key from alpha", "DELETE", "/api-keys/" + s.keyID(t, s.plainKey), alphaAdmin, "", 404, "not found"},
		{"unknown id", "DELETE", "/api-keys/key_0000000000000000", alphaAdmin, "", 404, "not found"},
		{"no name", "POST", "/api-keys", alphaAdmin, `{}`, 400, `"name" is required`},
		{"blank name", "PATCH", "/api-keys/" + made.ID, alphaAdmin, `{"name":"  "}`, 400, `"name" is required`},
		{"long name", "POST", "/api-keys", alphaAdmin, `{"name":"` + strings.Repeat("n", 129) + `"}`, 400, "at most 128 bytes"},
		{"not JSON", "POST", "/api-keys", alphaAdmin, `{`, 400, "malformed JSON"},
		{"no body", "PATCH", "/api-keys/" + made.ID, alphaAdmin, ``, 400, "request body is empty"},
		{"wrong type", "POST", "/api-keys", alphaAdmin, `{"name":7}`, 400, "must be string"},
		{"no key", "GET", "/api-keys", "", "", 401, "missing API key"},
		{"last server admin", "DELETE", "/api-keys/" + s.keyID(t, s.adminKey), s.adminKey, "", 409, "last admin key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, s.do(t, tc.method, tc.path, tc.key, tc.body), tc.status, tc.msg)
		})
	}

	// Delete: refused at once, and the key's open requests end.
	streamCtx, done := s.keys.Revocations().Track(ctx, made.ID)
	defer done()
	if w := s.do(t, "DELETE", "/api-keys/"+made.ID, alphaAdmin, ""); w.Code != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", w.Code, w.Body)
	}
	select {
	case <-streamCtx.Done():
	default:
		t.Error("a request tracked under the deleted key goes on")
	}
	wantError(t, s.do(t, "GET", "/api-keys", made.Key, ""), 401, "invalid API key")
	wantError(t, s.do(t, "DELETE", "/api-keys/"+made.ID, alphaAdmin, ""), 404, "not found")
}

func (s *testServer) keyID(t *testing.T, key string) string {
	t.Helper()
	rec, ok := s.keys.Verify(key)
	if !ok {
		t.Fatalf("key %.10s… does not verify", key)
	}
	return rec.ID
}
