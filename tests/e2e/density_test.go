package e2e

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestManySandboxes: a host runs more sandboxes at once than the kernel's
// per-uid quotas would allow if each box took one of them, and a server
// restarts with all of them. Every box's root is the same host uid (the id
// map), and runc used to give each box a new session keyring, so the 201st
// box failed with "unable to create session key: disk quota exceeded"
// (kernel.keys.maxkeys, 200 by default); and a restart sent every box's
// firewall rules in one netlink batch, which failed (EMSGSIZE, ENOBUFS)
// past a few dozen boxes and stopped the server.
//
// It runs on runc: the keyring cap was runc's, and the rule batching is the
// network layer's, the same under either runtime. Under gVisor, 205
// Sentries take gigabytes, and tearing down their network namespaces kept
// the host's network stack busy for the tests after it (loopback dials
// timed out in TestTemplateImport and TestNetworkCLI after it in CI).
func TestManySandboxes(t *testing.T) {
	if rt := harness.Runtime(); rt != "runc" {
		t.Skipf("runs on runc only (see its doc), not %s", rt)
	}
	b, err := os.ReadFile("/proc/sys/kernel/keys/maxkeys")
	if err != nil {
		t.Fatal(err)
	}
	maxkeys, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	n := maxkeys + 5
	// A /21 holds 512 sandboxes' links (the harness's default /23 holds
	// 128).
	srv := harness.Start(t, "--subnet", harness.RandomSubnet(21))
	ctx := ctxFor(t, 10*time.Minute)
	ids := make(chan string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{MemoryMB: 64, Timeout: 10 * time.Minute})
				if err != nil {
					errs <- err
					continue
				}
				ids <- sb.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	close(errs)
	for err := range errs {
		t.Fatalf("%d sandboxes at once (kernel.keys.maxkeys is %d): %v", n, maxkeys, err)
	}
	list, err := srv.Client.ListSandboxes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("%d sandboxes listed, want %d", len(list), n)
	}
	srv.Restart()
	if list, err = srv.Client.ListSandboxes(ctx, nil); err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, sb := range list {
		if sb.State == client.StateRunning {
			running++
		}
	}
	if running != n {
		t.Fatalf("%d of %d sandboxes running after a restart", running, n)
	}
	// The last one made still runs commands.
	var last string
	for id := range ids {
		last = id
	}
	sb, err := srv.Client.ConnectSandbox(ctx, last, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := mustRun(t, ctx, sb, "echo alive", nil); r.Stdout != "alive\n" {
		t.Fatalf("sandbox %d of %d: %+v", n, n, r)
	}
	// Killed here, four at a time: the harness's clean-up kills what a
	// test leaves one by one, within a minute.
	kill := make(chan string, len(list))
	for _, sb := range list {
		kill <- sb.SandboxID
	}
	close(kill)
	killErrs := make(chan error, len(list))
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range kill {
				if err := srv.Client.KillSandbox(ctx, id); err != nil {
					killErrs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(killErrs)
	for err := range killErrs {
		t.Fatalf("kill: %v", err)
	}
}
