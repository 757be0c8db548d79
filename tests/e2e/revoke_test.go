package e2e

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestRevokedKeyEndsStream: a command stream opened with a sandbox that
// key K created ends within a second of K's revocation, and K's next call
// is 401; a stream of another key's sandbox goes on.
func TestRevokedKeyEndsStream(t *testing.T) {
	srv := harness.Start(t, "--internet=false")
	ctx := ctxFor(t, 2*time.Minute)
	k, err := srv.Client.CreateKey(ctx, "leaked")
	if err != nil {
		t.Fatal(err)
	}
	kc := client.New(srv.URL, k.Key)
	sb, err := kc.CreateSandbox(ctx, client.CreateOptions{Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Client.KillSandbox(ctx, sb.ID)
	other, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Kill(ctx)

	streams := map[string]*client.Process{}
	for name, s := range map[string]*client.Sandbox{"leaked": sb, "other": other} {
		p, err := s.Start(ctx, client.ExecOptions{Cmd: "/bin/sleep", Args: []string{"300"}})
		if err != nil {
			t.Fatalf("start a long command in %s's sandbox: %v", name, err)
		}
		streams[name] = p
	}
	revoked := time.Now()
	if err := srv.Client.DeleteKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-streams["leaked"].Done():
		t.Logf("the stream ended %s after the revocation", time.Since(revoked))
	case <-time.After(time.Second):
		t.Fatal("the revoked key's command stream still runs a second after the revocation")
	}
	select {
	case <-streams["other"].Done():
		t.Error("revoking one key ended another key's stream")
	default:
	}
	_, err = kc.ListSandboxes(ctx, nil)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("a call with the revoked key = %v; want 401", err)
	}
	streams["other"].Disconnect()
}
