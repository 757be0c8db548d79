package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/runtime/bundle"
	"github.com/sbxdev/sbx/tests/harness"
)

// sandboxUsage returns sandbox id's line of the usage report by sandbox.
func sandboxUsage(t *testing.T, ctx context.Context, c *client.Client, id string) client.UsageRecord {
	t.Helper()
	rep, err := c.Usage(ctx, &client.UsageOptions{By: "sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Records {
		if r.SandboxID == id {
			return r
		}
	}
	return client.UsageRecord{SandboxID: id}
}

// awaitUsage polls sandbox id's usage until ok holds, failing after
// within.
func awaitUsage(t *testing.T, ctx context.Context, c *client.Client, id, what string, within time.Duration, ok func(client.UsageRecord) bool) client.UsageRecord {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := sandboxUsage(t, ctx, c, id)
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s not seen: %+v", within, what, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// shellCPU parses the first line of bash's `times`: the shell's user and
// system CPU time ("0m1.234s 0m0.010s").
func shellCPU(t *testing.T, out string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)m([\d.]+)s (\d+)m([\d.]+)s`).FindStringSubmatch(strings.TrimSpace(out))
	if m == nil {
		t.Fatalf("times printed %q", out)
	}
	var total float64
	for _, p := range [][2]string{{m[1], m[2]}, {m[3], m[4]}} {
		mins, _ := strconv.ParseFloat(p[0], 64)
		secs, _ := strconv.ParseFloat(p[1], 64)
		total += mins*60 + secs
	}
	return time.Duration(total * float64(time.Second))
}

// TestUsageAcrossRestart meters a sandbox with 1 CPU reserved that runs a
// busy loop through a restart of sbx serve: its reserved vCPU-seconds
// are the wall seconds of its life within a sample interval (the server's
// downtime counted once), its CPU-seconds used are the loop's CPU time
// (the cgroup's counter, which kept counting through the restart, counted
// once: the box's cgroup, read here, agrees), and the figures stay after it is killed, alike through the API
// and `sbx usage`.
func TestUsageAcrossRestart(t *testing.T) {
	const interval = time.Second
	srv := harness.Start(t, "--internet=false", "--metrics-interval", interval.String())
	ctx := ctxFor(t, 4*time.Minute)
	c := srv.Client

	t0 := time.Now()
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{CPUs: 1, MemoryMB: 512, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Since(t0)
	// A busy loop of 20 s wall time that writes its CPU time when done;
	// it runs on through the restart (the agent outlives the server).
	if _, err := sb.Run(ctx, `nohup bash -c 'end=$((SECONDS+20)); while [ $SECONDS -lt $end ]; do :; done; times > /tmp/cpu.txt' >/dev/null 2>&1 &`, nil); err != nil {
		t.Fatal(err)
	}
	// Two seconds of CPU counted before the restart: counting them
	// again would show.
	before := awaitUsage(t, ctx, c, sb.ID, "2 s of CPU", time.Minute, func(r client.UsageRecord) bool { return r.CPUSeconds >= 2 })
	if life := time.Since(t0).Seconds(); before.RunSeconds > life || math.Abs(before.VCPUSeconds-before.RunSeconds) > 1e-6 {
		t.Fatalf("before the restart, %.1f s into its life: %+v", life, before)
	}
	srv.Restart()
	c = srv.Client
	sb, err = c.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var loopCPU time.Duration
	for {
		r, err := sb.Run(ctx, "cat /tmp/cpu.txt 2>/dev/null", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Stdout != "" {
			loopCPU = shellCPU(t, r.Stdout)
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the busy loop did not end")
		}
		time.Sleep(500 * time.Millisecond)
	}
	// A sample after the loop's end; then the box's cgroup counter,
	// read here, against the metered CPU, then the kill.
	mark := time.Since(t0).Seconds()
	awaitUsage(t, ctx, c, sb.ID, "a sample after the loop", time.Minute, func(r client.UsageRecord) bool { return r.RunSeconds > mark })
	box, err := bundle.Cgroups{}.Usage(sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	counted := time.Duration(box.CPUNanos).Seconds()
	if r := sandboxUsage(t, ctx, c, sb.ID); r.CPUSeconds > counted+0.001 || r.CPUSeconds < counted-interval.Seconds() {
		t.Errorf("CPU used %.3f s, the box's cgroup counted %.3f s", r.CPUSeconds, counted)
	}
	if err := c.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	life := time.Since(t0).Seconds()
	u := sandboxUsage(t, ctx, c, sb.ID)
	t.Logf("life %.2f s (create %.2f s), loop CPU %.2f s: %+v", life, created.Seconds(), loopCPU.Seconds(), u)

	// Reserved: the wall seconds from its start (after t0, within the
	// create) to its last sample (within an interval and a round of
	// the kill), counted once.
	if u.RunSeconds > life || u.RunSeconds < life-created.Seconds()-2*interval.Seconds()-1 {
		t.Errorf("run %.2f s of a life of %.2f s (create %.2f s)", u.RunSeconds, life, created.Seconds())
	}
	if math.Abs(u.VCPUSeconds-u.RunSeconds) > 1e-6 {
		t.Errorf("vCPU-seconds %.3f of 1 CPU over %.3f s", u.VCPUSeconds, u.RunSeconds)
	}
	// Used: the loop's CPU time and a little of the agent's and the
	// shells', not the 2 s before the restart again. (gVisor's own
	// accounting of the loop, which `times` reads, is not the host's:
	// under runsc the cgroup check above stands alone.)
	if got := u.CPUSeconds; harness.Runtime() == "runc" && (got < loopCPU.Seconds()-0.05 || got > loopCPU.Seconds()+1.5) {
		t.Errorf("CPU used %.2f s, the loop used %.2f s", got, loopCPU.Seconds())
	}
	if mem := 0.5 * u.RunSeconds; math.Abs(u.MemoryGiBSeconds-mem) > 1e-6 {
		t.Errorf("memory GiB-seconds %.4f, want %.4f", u.MemoryGiBSeconds, mem)
	}
	if u.MemoryUsedGiBSeconds <= 0 || u.MemoryUsedGiBSeconds > u.MemoryGiBSeconds || u.DiskGiBHours <= 0 {
		t.Errorf("memory used or disk not metered: %+v", u)
	}

	// The same through `sbx usage`, as JSON and CSV, and by day.
	stdout, stderr, code := srv.CLI(ctx, nil, "usage", "--by", "sandbox", "--json")
	var rep client.UsageReport
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("sbx usage --json: %d %s %s", code, stdout, stderr)
	}
	if len(rep.Records) != 1 || rep.Records[0] != u || rep.Total.RunSeconds != u.RunSeconds {
		t.Errorf("sbx usage --json: %+v, want the one sandbox's %+v", rep, u)
	}
	stdout, stderr, code = srv.CLI(ctx, nil, "usage", "--by", "day", "--since", "24h", "--csv")
	lines, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if code != 0 || err != nil || len(lines) != 2 || lines[0][0] != "day" || lines[1][0] != time.Now().UTC().Format(time.DateOnly) ||
		lines[1][1] != strconv.FormatFloat(u.RunSeconds, 'f', -1, 64) {
		t.Errorf("sbx usage --csv: %d %q %s (%v)", code, stdout, stderr, err)
	}
}

// TestUsageBadInput checks GET /sbx/v1/usage's answers to wrong input:
// E2B's error shape with a 4xx.
func TestUsageBadInput(t *testing.T) {
	srv := harness.Start(t, "--internet=false")
	ctx := ctxFor(t, time.Minute)
	plain, err := srv.Client.CreateKey(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, query, key string
		status           int
		msg              string
	}{
		{"by week", "?by=week", srv.APIKey, 400, "by must be"},
		{"since not a time", "?since=yesterday", srv.APIKey, 400, "since must be"},
		{"until not a time", "?until=2026-13-01", srv.APIKey, 400, "until must be"},
		{"since after until", "?since=2026-12-02&until=2026-12-01", srv.APIKey, 400, "before until"},
		{"another team, plain key", "?team=other", plain.Key, 403, "admin"},
		{"unknown team, admin key", "?team=other", srv.APIKey, 404, "not found"},
		{"wrong key", "", harness.NewAPIKey(), 401, "invalid API key"},
		{"no key", "", "", 401, "missing API key"},
	} {
		st, body := getJSON(t, ctx, srv.URL+"/sbx/v1/usage"+tc.query, tc.key)
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if st != tc.status || json.Unmarshal(body, &e) != nil || e.Code != tc.status || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, st, body, tc.status, tc.msg)
		}
	}
	// Valid: the key's own team, nothing used yet, by default or by name.
	for _, q := range []string{"", "?by=day&since=2026-12-01T00:00:00Z", "?team=default"} {
		st, body := getJSON(t, ctx, srv.URL+"/sbx/v1/usage"+q, srv.APIKey)
		if st != http.StatusOK || !strings.Contains(string(body), `"records":[]`) {
			t.Errorf("usage%s: %d %s", q, st, body)
		}
	}
	if st, body := getJSON(t, ctx, srv.URL+"/sbx/v1/usage", plain.Key); st != http.StatusOK {
		t.Errorf("usage with a plain key: %d %s", st, body)
	}
}

// TestUsageEgress uploads a known number of bytes from a sandbox to a
// sink on the test internet: its metered egress grows by them, plus the
// links' framing and a little more, not by much more.
func TestUsageEgress(t *testing.T) {
	srv, ti := netServer(t, "--metrics-interval", "1s")
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	const n = 4 << 20
	var ln net.Listener
	inNS(t, "/run/netns/"+ti.NS, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(ti.A, 9000).String())
		return err
	})
	t.Cleanup(func() { ln.Close() })
	got := make(chan int64, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer conn.Close()
		m, _ := io.Copy(io.Discard, conn)
		got <- m
	}()
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := awaitUsage(t, ctx, c, sb.ID, "a first sample", time.Minute, func(r client.UsageRecord) bool { return r.RunSeconds > 0 })
	mustRun(t, ctx, sb, fmt.Sprintf("head -c %d /dev/zero > /dev/tcp/%s/9000", n, ti.A), nil)
	if m := <-got; m != n {
		t.Fatalf("the sink received %d bytes, want %d", m, n)
	}
	u := awaitUsage(t, ctx, c, sb.ID, "the upload's bytes", time.Minute, func(r client.UsageRecord) bool { return r.EgressBytes-base.EgressBytes >= n })
	// Two more samples: nothing else of that size was sent.
	mark := u.RunSeconds
	u = awaitUsage(t, ctx, c, sb.ID, "two more samples", time.Minute, func(r client.UsageRecord) bool { return r.RunSeconds > mark+1.5 })
	sent := u.EgressBytes - base.EgressBytes
	t.Logf("uploaded %d bytes; egress metered %d (%.1f%% more)", n, sent, float64(sent-n)/n*100)
	if sent < n || sent > n*11/10+256<<10 {
		t.Fatalf("egress %d bytes for an upload of %d", sent, n)
	}
}

// TestUsagePause pauses a sandbox holding a 32 MiB file: while paused its
// running figures stand still and its kept files count in GiB-hours;
// after its resume it is counted running again from about its resume.
func TestUsagePause(t *testing.T) {
	const interval = time.Second
	srv := harness.Start(t, "--internet=false", "--metrics-interval", interval.String())
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, sb, "head -c 33554432 /dev/urandom > /home/user/blob 2>/dev/null || head -c 33554432 /dev/urandom > /tmp/blob; sync", nil)
	awaitUsage(t, ctx, c, sb.ID, "a sample", time.Minute, func(r client.UsageRecord) bool { return r.RunSeconds > 0 })
	if err := c.Pause(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	atPause := sandboxUsage(t, ctx, c, sb.ID)
	u := awaitUsage(t, ctx, c, sb.ID, "3 s of kept files", time.Minute, func(r client.UsageRecord) bool {
		return r.PausedGiBHours > 0 && time.Since(paused) > 3*interval
	})
	u = awaitUsage(t, ctx, c, sb.ID, "a later paused round", time.Minute, func(r client.UsageRecord) bool { return r.PausedGiBHours > u.PausedGiBHours })
	pausedFor := time.Since(paused)
	// Running figures stand still (but for the round that saw it last
	// running, which may end after the pause call began).
	if u.RunSeconds > atPause.RunSeconds+interval.Seconds() || u.CPUSeconds > atPause.CPUSeconds+1 {
		t.Errorf("running figures moved while paused: %+v, at the pause %+v", u, atPause)
	}
	// At least the blob kept over the paused time, less a round.
	if want := 32.0 / 1024 * (pausedFor.Seconds() - 2*interval.Seconds()) / 3600; u.PausedGiBHours < want {
		t.Errorf("paused GiB-hours %.8f over %s, want at least %.8f", u.PausedGiBHours, pausedFor, want)
	}
	t.Logf("paused %s: %+v", pausedFor, u)
	resumed := time.Now()
	if _, err := c.Resume(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	before := sandboxUsage(t, ctx, c, sb.ID)
	after := awaitUsage(t, ctx, c, sb.ID, "running samples after the resume", time.Minute, func(r client.UsageRecord) bool {
		return r.RunSeconds > before.RunSeconds+2
	})
	if grew := after.RunSeconds - u.RunSeconds; grew > time.Since(resumed).Seconds()+interval.Seconds() {
		t.Errorf("after a resume %.1f s ago, run grew by %.1f s: the pause counted as running", time.Since(resumed).Seconds(), grew)
	}
}
