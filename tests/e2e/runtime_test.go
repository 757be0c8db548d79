package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestRuntimeSelection runs a runc sandbox and a gVisor sandbox side by side
// on one server, chosen per request: each reports its runtime, runs
// commands, and sees the kernel of its runtime (the host's under runc,
// gVisor's Sentry under runsc); killing one leaves the other.
func TestRuntimeSelection(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	boxes := map[string]*client.Sandbox{}
	for _, rt := range []string{"runc", "runsc"} {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Runtime: rt})
		if err != nil {
			t.Fatalf("create on %s: %v", rt, err)
		}
		if sb.Runtime != rt {
			t.Fatalf("created on %s, the answer says %q", rt, sb.Runtime)
		}
		boxes[rt] = sb
	}
	for rt, sb := range boxes {
		info, err := c.GetSandbox(ctx, sb.ID)
		if err != nil || info.Runtime != rt {
			t.Fatalf("get %s sandbox: %+v, %v", rt, info, err)
		}
		// gVisor's dmesg is its own boot log; the host's is not readable
		// from a runc box (no CAP_SYSLOG), so the two differ visibly.
		res := mustRun(t, ctx, sb, "dmesg 2>&1 | head -1; echo ok", &client.RunOptions{User: "root"})
		gvisor := strings.Contains(res.Stdout, "gVisor")
		if gvisor != (rt == "runsc") || !strings.HasSuffix(res.Stdout, "ok\n") {
			t.Fatalf("%s sandbox: dmesg says %q", rt, res.Stdout)
		}
	}
	list, err := c.ListSandboxes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range list {
		got[s.SandboxID] = s.Runtime
	}
	for rt, sb := range boxes {
		if got[sb.ID] != rt {
			t.Fatalf("list reports %s sandbox as %q", rt, got[sb.ID])
		}
	}
	if err := boxes["runsc"].Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, boxes["runc"], "echo still", nil); res.Stdout != "still\n" {
		t.Fatalf("runc sandbox after killing its neighbour: %q", res.Stdout)
	}
}

// TestRuntimeUnavailable: a server whose runsc does not work still serves
// runc sandboxes, and refuses a runsc one with a 400 that says why.
func TestRuntimeUnavailable(t *testing.T) {
	srv := harness.Start(t, "--runtime", "runc", "--runsc", "/nonexistent/runsc")
	ctx := ctxFor(t, 2*time.Minute)
	c := srv.Client
	_, err := c.CreateSandbox(ctx, client.CreateOptions{Runtime: "runsc"})
	var ae *client.APIError
	if !errors.Is(err, client.ErrInvalidArgument) || !errors.As(err, &ae) || !strings.Contains(ae.Message, `runtime "runsc" is not available on this server`) || !strings.Contains(ae.Message, "available: runc") {
		t.Fatalf("create on a missing runsc: %v", err)
	}
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Runtime != "runc" {
		t.Fatalf("default runtime %q, want runc", sb.Runtime)
	}
	if res := mustRun(t, ctx, sb, "echo hi", nil); res.Stdout != "hi\n" {
		t.Fatalf("runc sandbox: %q", res.Stdout)
	}
}
