package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestCLILifecycle drives pause, resume, snapshots and forks through the sbx
// binary: output, --json and exit codes.
func TestCLILifecycle(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	id := strings.TrimSpace(cliOK(t, ctx, srv, "create", "--lifecycle", "persistent", "--timeout", "10m"))
	info, err := srv.Client.GetSandbox(ctx, id)
	if err != nil || info.Lifecycle == nil || !info.Lifecycle.Persistent {
		t.Fatalf("sbx create --lifecycle persistent: %+v, %v", info, err)
	}
	cliOK(t, ctx, srv, "exec", id, "--", "sh", "-c", "echo snap > /home/user/s")

	if out := cliOK(t, ctx, srv, "pause", id); out != id+"\n" {
		t.Fatalf("sbx pause: %q", out)
	}
	if _, stderr, code := srv.CLI(ctx, nil, "pause", id); code != 1 || !strings.Contains(stderr, "already paused") {
		t.Fatalf("sbx pause of a paused sandbox: exit %d, %q", code, stderr)
	}
	list := cliOK(t, ctx, srv, "ls", "--state", "paused")
	if !strings.Contains(list, id) || !strings.Contains(list, "paused") {
		t.Fatalf("sbx ls --state paused:\n%s", list)
	}
	if out := cliOK(t, ctx, srv, "resume", "--timeout", "10m", id); out != id+"\n" {
		t.Fatalf("sbx resume: %q", out)
	}
	if _, stderr, code := srv.CLI(ctx, nil, "resume", id); code != 1 || !strings.Contains(stderr, "already running") {
		t.Fatalf("sbx resume of a running sandbox: exit %d, %q", code, stderr)
	}

	var sn client.SnapshotInfo
	decodeStrict(t, cliOK(t, ctx, srv, "snapshot", "create", "--name", "cli-snap", "--json", id), &sn)
	if sn.SandboxID != id || sn.Names[0] != "cli-snap" {
		t.Fatalf("sbx snapshot create --json: %+v", sn)
	}
	if ls := cliOK(t, ctx, srv, "snapshot", "ls"); !strings.Contains(ls, sn.SnapshotID) || !strings.Contains(ls, "cli-snap") {
		t.Fatalf("sbx snapshot ls:\n%s", ls)
	}
	from := strings.TrimSpace(cliOK(t, ctx, srv, "create", "--from-snapshot", "cli-snap", "--timeout", "5m"))
	if out := cliOK(t, ctx, srv, "exec", from, "--", "cat", "/home/user/s"); out != "snap\n" {
		t.Fatalf("sandbox from snapshot: %q", out)
	}
	if _, stderr, code := srv.CLI(ctx, nil, "snapshot", "rm", "cli-snap"); code != 1 || !strings.Contains(stderr, "used by") {
		t.Fatalf("sbx snapshot rm of a snapshot in use: exit %d, %q", code, stderr)
	}
	cliOK(t, ctx, srv, "kill", from)
	cliOK(t, ctx, srv, "snapshot", "rm", "cli-snap")

	forks := strings.Fields(cliOK(t, ctx, srv, "fork", "-n", "2", "--timeout", "5m", id))
	if len(forks) != 2 {
		t.Fatalf("sbx fork -n 2: %q", forks)
	}
	for _, f := range forks {
		if out := cliOK(t, ctx, srv, "exec", f, "--", "cat", "/home/user/s"); out != "snap\n" {
			t.Fatalf("fork %s: %q", f, out)
		}
	}
	if _, stderr, code := srv.CLI(ctx, nil, "fork", "-n", "0", id); code != 1 || !strings.Contains(stderr, "between 1 and") {
		t.Fatalf("sbx fork -n 0: exit %d, %q", code, stderr)
	}
	cliOK(t, ctx, srv, "kill", forks[0], forks[1], id)
}
