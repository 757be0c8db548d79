package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

func TestSecretCommands(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, time.Minute)
	r := sbx(t, ctx, srv, "s3cr3t-value\n", "secret", "create", "CLI-Token", "--meta", "team=ml")
	if r.code != 0 || !strings.HasPrefix(strings.TrimSpace(r.stdout), "sec_") {
		t.Fatalf("secret create: %+v", r)
	}
	id := strings.TrimSpace(r.stdout)
	file := filepath.Join(t.TempDir(), "v")
	os.WriteFile(file, []byte("from-file"), 0o600)
	if r := sbx(t, ctx, srv, "", "secret", "update", "cli-token", "--from-file", file); r.code != 0 || strings.TrimSpace(r.stdout) != id {
		t.Fatalf("secret update: %+v", r)
	}
	if r := sbx(t, ctx, srv, "x", "secret", "create", "cli-token"); r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("second secret named cli-token: %+v; want a failure naming the conflict", r)
	}
	r = sbx(t, ctx, srv, "", "secret", "ls", "--json")
	var list []client.Secret
	if err := json.Unmarshal([]byte(r.stdout), &list); r.code != 0 || err != nil || len(list) != 1 ||
		list[0].Name != "cli-token" || list[0].CurrentVersion != 2 || list[0].Metadata["team"] != "ml" {
		t.Fatalf("secret ls --json = %+v (%v); want cli-token at version 2 with its metadata", r, err)
	}
	r = sbx(t, ctx, srv, "", "secret", "ls")
	if r.code != 0 || !strings.Contains(r.stdout, "cli-token") || strings.Contains(r.stdout, "from-file") || strings.Contains(r.stdout, "s3cr3t") {
		t.Fatalf("secret ls: %+v", r)
	}
	if r := sbx(t, ctx, srv, "", "secret", "rm", "cli-token"); r.code != 0 {
		t.Fatalf("secret rm: %+v", r)
	}
	if r := sbx(t, ctx, srv, "", "secret", "rm", id); r.code == 0 {
		t.Fatalf("second secret rm: %+v; want a failure", r)
	}
	if r := sbx(t, ctx, srv, "", "secret", "ls", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("secret ls after rm: %+v", r)
	}
}
