package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

var warmReady = regexp.MustCompile(`msg="warm sandbox ready" sandbox_id=([a-z0-9]{20})`)

// warmIDs returns the sandboxes the server has logged as ready in its warm
// pool, waiting until there are at least n.
func warmIDs(t *testing.T, srv *harness.Server, n int) map[string]bool {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ids := map[string]bool{}
		for _, m := range warmReady.FindAllStringSubmatch(srv.Logs(), -1) {
			ids[m[1]] = true
		}
		if len(ids) >= n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("the warm pool has made %d sandboxes, want %d", len(ids), n)
		}
		time.Sleep(50 * time.Millisecond) // the log is the only sign of a pooled sandbox being ready
	}
}

// TestWarmPool: with --warm-pool, a create with default resources takes a
// sandbox started ahead of it, which then behaves as any created one (its
// environment variables, metadata, timeout), the pool fills again, pooled
// sandboxes are never listed nor reachable for sbx's own agent routes, and
// none outlives the server.
func TestWarmPool(t *testing.T) {
	srv := harness.Start(t, "--warm-pool", "2")
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	pooled := warmIDs(t, srv, 2)
	if list, err := c.ListSandboxes(ctx, nil); err != nil || len(list) != 0 {
		t.Fatalf("pooled sandboxes are listed: %+v %v", list, err)
	}

	t0 := time.Now()
	a, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: time.Minute, Env: map[string]string{"FOO": "bar"}, Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if !pooled[a.ID] {
		t.Fatalf("create got %s, not one of the pooled %v", a.ID, pooled)
	}
	if r := mustRun(t, ctx, a, `echo "$FOO $HOME"`, nil); r.Stdout != "bar /home/user\n" {
		t.Fatalf("environment of a warm sandbox: %q", r.Stdout)
	}
	info, err := c.GetSandbox(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != client.StateRunning || info.Metadata["k"] != "v" || info.StartedAt.Before(t0.Add(-time.Second)) ||
		info.EndAt.Sub(info.StartedAt) < 59*time.Second || info.EndAt.Sub(info.StartedAt) > 61*time.Second {
		t.Fatalf("warm sandbox as created: %+v", info)
	}

	b, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !pooled[b.ID] || b.ID == a.ID {
		t.Fatalf("second create got %s, want the other pooled one of %v", b.ID, pooled)
	}
	if r := mustRun(t, ctx, b, `echo "${FOO:-unset}"`, nil); r.Stdout != "unset\n" {
		t.Fatalf("the first create's environment leaked into the second: %q", r.Stdout)
	}

	// An egress policy is set on a pooled sandbox before it is handed out.
	awaitPooled(t, srv, 1)
	denied, err := c.CreateSandbox(ctx, client.CreateOptions{Network: client.DenyAll("10.9.8.7")})
	if err != nil {
		t.Fatal(err)
	}
	if !warmIDs(t, srv, 3)[denied.ID] {
		t.Fatalf("a create with an egress policy got %s, not a pooled sandbox", denied.ID)
	}
	if info, err := c.GetSandbox(ctx, denied.ID); err != nil || info.AllowInternetAccess == nil || *info.AllowInternetAccess ||
		info.Network == nil || len(info.Network.AllowOut) != 1 || info.Network.AllowOut[0] != "10.9.8.7" {
		t.Fatalf("egress policy of a warm sandbox: %+v %v", info, err)
	}
	if err := denied.Kill(ctx); err != nil {
		t.Fatal(err)
	}

	// Resources other than the defaults: started for the request.
	big, err := c.CreateSandbox(ctx, client.CreateOptions{MemoryMB: 1024})
	if err != nil {
		t.Fatal(err)
	}
	// The pool fills again (three more) while sandboxes are in use.
	refilled := warmIDs(t, srv, 5)
	if refilled[big.ID] {
		t.Fatalf("a create with its own memory limit took pooled sandbox %s", big.ID)
	}
	if info, err := c.GetSandbox(ctx, big.ID); err != nil || info.MemoryMB != 1024 {
		t.Fatalf("sandbox with its own memory: %+v %v", info, err)
	}
	list, err := c.ListSandboxes(ctx, nil)
	if err != nil || len(list) != 3 {
		t.Fatalf("listed %d sandboxes (%v), want the 3 created", len(list), err)
	}

	// sbx's own agent route is not reachable through the proxy, even
	// with the sandbox's token.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/.sbx/configure", strings.NewReader(`{"accessToken":"x"}`))
	req.Header.Set("E2b-Sandbox-Id", a.ID)
	req.Header.Set("E2b-Sandbox-Port", "49983")
	req.Header.Set("X-Access-Token", info.EnvdAccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST /.sbx/configure through the proxy: %s, want 404", resp.Status)
	}
	if r := mustRun(t, ctx, a, `echo "$FOO"`, nil); r.Stdout != "bar\n" {
		t.Fatalf("after the refused configure: %q", r.Stdout)
	}

	// No pooled sandbox outlives the server: a stop kills them, and after
	// a crash the next start removes them.
	idle := map[string]bool{}
	for id := range refilled {
		if id != a.ID && id != b.ID {
			idle[id] = true
		}
	}
	srv.Crash()
	srv.StartAgain()
	for id := range idle {
		awaitGone(t, filepath.Join(srv.DataDir, "sandboxes", id))
	}
	warmIDs(t, srv, len(refilled)+2) // and it fills again
	now := warmReady.FindAllStringSubmatch(srv.Logs(), -1)
	srv.Stop()
	for _, m := range now {
		if _, err := os.Stat(filepath.Join(srv.DataDir, "sandboxes", m[1])); err == nil && m[1] != a.ID && m[1] != b.ID {
			t.Fatalf("pooled sandbox %s left after the server stopped", m[1])
		}
	}
	srv.StartAgain()
	if r := mustRun(t, context.Background(), a, "echo alive", nil); r.Stdout != "alive\n" {
		t.Fatalf("a created warm sandbox after restarts: %q", r.Stdout)
	}

	// Removing the pool's template counts only its users' sandboxes (the
	// three created above), never the pool's, ready or being started
	// (the pool is filling again after the restart); it is refused here,
	// and the pool fills again after.
	before := len(warmReady.FindAllStringSubmatch(srv.Logs(), -1))
	for i := 0; i < 3; i++ {
		err := c.DeleteTemplate(ctx, "base")
		if !errors.Is(err, client.ErrConflict) || !strings.Contains(err.Error(), "used by 3 sandbox(es)") {
			t.Fatalf("template rm base with 3 sandboxes and a warm pool: %v", err)
		}
	}
	warmIDs(t, srv, before+2)
}

// awaitPooled waits until srv's warm pool holds n sandboxes: those its log
// says were made ready less those it says were taken.
func awaitPooled(t *testing.T, srv *harness.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if srv.Pooled() >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the warm pool holds fewer than %d sandboxes", n)
		}
		time.Sleep(50 * time.Millisecond) // the log is the only sign of it
	}
}

// awaitGone waits until path no longer exists (the server removes it while
// it starts).
func awaitGone(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWarmPoolGrowsWithDemand: a server started with a pool of 1 that may
// grow to 4 meets a burst of 4 creates, then refills to 4 (in parallel),
// every pooled sandbox answering once taken; the pool reports its measured
// memory.
func TestWarmPoolGrowsWithDemand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := harness.Start(t, "--warm-pool", "1", "--warm-pool-max", "4", "--warm-pool-parallel", "2")
	awaitPooled(t, srv, 1)
	burst := func() []*client.Sandbox {
		out := make([]*client.Sandbox, 4)
		errs := make(chan error, 4)
		for i := range out {
			go func() {
				sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
				out[i] = sb
				errs <- err
			}()
		}
		for range out {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	for _, sb := range burst() {
		sb.Kill(ctx)
	}
	// The demand of 4 is remembered: the pool grows to 4 and a second
	// burst takes pooled sandboxes only.
	awaitPooled(t, srv, 4)
	if !strings.Contains(srv.Logs(), "target=4") {
		t.Fatalf("the pool did not aim for 4 after a burst of 4:\n%s", srv.Logs())
	}
	taken := strings.Count(srv.Logs(), "warm=true")
	for _, sb := range burst() {
		r, err := sb.Run(ctx, "echo ok", nil)
		if err != nil || r.Stdout != "ok\n" {
			t.Fatalf("a sandbox of the grown pool: %q %v", r.Stdout, err)
		}
		sb.Kill(ctx)
	}
	if got := strings.Count(srv.Logs(), "warm=true") - taken; got != 4 {
		t.Errorf("%d of the second burst's 4 creates took a pooled sandbox, want 4", got)
	}
	if !regexp.MustCompile(`pool_bytes=[1-9][0-9]*`).MatchString(srv.Logs()) {
		t.Errorf("the pool measured no memory of its sandboxes")
	}
}

// cpuWeight reads box id's CPU weight from its host cgroup: cpu.weight on
// cgroup v2, cpu.shares on v1.
func cpuWeight(t *testing.T, id string) string {
	t.Helper()
	p := filepath.Join("/sys/fs/cgroup/cpu/sbx", id, "cpu.shares")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		p = filepath.Join("/sys/fs/cgroup/sbx", id, "cpu.weight")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("cpu weight of %s: %v", id, err)
	}
	return strings.TrimSpace(string(b))
}

// TestWarmPoolBackground: a pooled sandbox waits at the lowest CPU weight,
// so that the pool's refills yield the CPU to the creates and commands of a
// burst, and the create that takes it gets the default weight before its
// first command.
func TestWarmPoolBackground(t *testing.T) {
	srv := harness.Start(t, "--warm-pool", "1")
	ctx := ctxFor(t, 2*time.Minute)
	low, normal := "2", "1024"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		low, normal = "1", "100"
	}
	var id string
	for id = range warmIDs(t, srv, 1) {
	}
	if w := cpuWeight(t, id); w != low {
		t.Fatalf("pooled sandbox %s has cpu weight %s, want the lowest (%s)", id, w, low)
	}
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sb.ID != id {
		t.Fatalf("create got %s, not the pooled %s", sb.ID, id)
	}
	if w := cpuWeight(t, id); w != normal {
		t.Fatalf("handed-out sandbox %s has cpu weight %s, want the default (%s)", id, w, normal)
	}
	if r := mustRun(t, ctx, sb, "echo hi", nil); r.Stdout != "hi\n" {
		t.Fatalf("echo hi in the handed-out sandbox: %q", r.Stdout)
	}
	// A sandbox created with no pool to take from starts at the default.
	warmIDs(t, srv, 2)
	other, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{CPUs: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if w := cpuWeight(t, other.ID); w != normal {
		t.Fatalf("sandbox %s created without the pool has cpu weight %s, want %s", other.ID, w, normal)
	}
}
