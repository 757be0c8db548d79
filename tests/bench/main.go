// Command bench measures sbx against the raw runtime, side by side in one
// run, and prints a table of p50/p99 figures:
//
//   - create → first command finished (`echo hi`), against raw `runc run` of
//     the same root filesystem (the base template through the same overlay);
//   - the same on gVisor: a runsc sandbox against raw `runsc run` of that
//     root filesystem with the spec and flags sbx gives runsc;
//   - command round trip (`true`) on a running sandbox;
//   - a key press's echo through the dashboard's terminal WebSocket,
//     against the SDK's PTY (terminal.go; -only terminal);
//   - the cost of sandbox networking: create → first command on this server
//     (veth, NAT, egress rules) against a second one run with
//     `--network none`, alternating, and the network set-up time the server
//     logs for each create;
//   - N concurrent idle sandboxes and the host memory each costs outside its
//     own processes;
//   - the port proxy: download throughput and request latency through sbx
//     against a direct connection inside the sandbox (-only proxy runs this
//     part alone);
//   - a burst: create → first command for -burst creates one after another,
//     then all at once, against raw `runc run` done the same way, with the
//     default warm pool and with a pool as large as the burst (burst.go);
//   - the code interpreter: runCode('1+1') round trip and create → first
//     result from its warm pool and cold, against internal/interp on the
//     host (interp.go; -only interp);
//   - the dashboard: first load and actions against the direct API calls
//     (dashboard.go; -only dashboard, not run by default).
//
// Run it as root on a host prepared by scripts/setup.sh:
//
//	go run ./tests/bench -n 50 -concurrent 100
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/bench/benchutil"
	"github.com/sbxdev/sbx/tests/bench/rawbox"
	"github.com/sbxdev/sbx/tests/harness"
)

const (
	runcBin  = rawbox.RuncBin
	runscBin = rawbox.RunscBin
)

func main() {
	n := flag.Int("n", 50, "sandboxes to create for the create benchmark")
	rtt := flag.Int("rtt", 200, "commands for the round-trip benchmark")
	concurrent := flag.Int("concurrent", 100, "idle sandboxes to hold at once")
	sections := flag.String("only", "create,runsc,rtt,network,density,files,templates,proxy,burst,interp,sampler,terminal", "comma-separated sections to run: create, runsc (create → first command on gVisor), rtt, terminal (the dashboard terminal's key echo), network, density, files, templates, proxy, burst, interp (the code interpreter), dashboard (page load and actions against the API calls; not run by default), pool (the pooled burst alone, not run by default), sampler (the metrics sampler's cost)")
	interpN := flag.Int("interp-n", 20, "creates of the code interpreter benchmark, from its pool and cold")
	interpRTT := flag.Int("interp-rtt", 200, "runCode('1+1') round trips of the code interpreter benchmark")
	interpRuntime := flag.String("interp-runtime", "runc", "runtime of the code interpreter benchmark's sandboxes: runc or runsc")
	burstN := flag.Int("burst", 100, "creates in the burst benchmark, one after another and then at once")
	poolReps := flag.Int("pool-reps", 3, "bursts of the pool section (the pooled burst alone; SBX_BENCH_PERF=FILE records the first with perf)")
	defaultPool := flag.Int("default-pool", 2, "the warm pool of the burst benchmark's first server (sbx serve's default)")
	transferMiB := flag.Int64("transfer-mib", 200, "size of the file uploaded and downloaded, in MiB")
	transferReps := flag.Int("transfer-reps", 5, "uploads and downloads of that file")
	small := flag.Int("small", 300, "small-file write+read round trips")
	proxyMiB := flag.Int("proxy-mib", 1024, "MiB downloaded from a sandbox per run of the proxy throughput benchmark")
	proxyReqs := flag.Int("proxy-requests", 1000, "requests for the proxy latency benchmark")
	proxyRuns := flag.Int("proxy-runs", 3, "runs of the proxy throughput benchmark")
	dashN := flag.Int("dash-n", 50, "repetitions of each dashboard measure (kills: at most 20)")
	flag.Parse()
	want := map[string]bool{}
	for _, s := range strings.Split(*sections, ",") {
		want[strings.TrimSpace(s)] = true
	}
	defer tb.Cleanups()
	srv := harness.Start(tb)
	ctx := context.Background()
	c := srv.Client

	// Warm up: first create after start pays for cold caches.
	for i := 0; i < 3; i++ {
		sb := must(c.CreateSandbox(ctx, client.CreateOptions{}))
		must(sb.Run(ctx, "echo hi", nil))
		sb.Kill(ctx)
	}

	var rows []row
	if want["create"] {
		raw := rawRunc(runcBin, nil, *n, "")
		// The same, with the exact OCI spec sbx gives a sandbox (seccomp,
		// capabilities, masked paths, limits), taken from a live sandbox.
		probe := must(c.CreateSandbox(ctx, client.CreateOptions{}))
		rawSpec := rawRunc(runcBin, nil, *n, filepath.Join(srv.DataDir, "sandboxes", probe.ID, "bundle", "config.json"))
		probe.Kill(ctx)
		sbx := createFirstCommand(ctx, c, *n, "runc")
		rows = append(rows, row{"create → `echo hi` done, vs `runc run` (runc's default spec)", sbx, raw, ""})
		rows = append(rows, row{"create → `echo hi` done, vs `runc run` (sbx's spec)", sbx, rawSpec, ""})
		// The same on a server with a warm pool (sbx serve's default; the
		// server above has none): creates back to back, each taking a
		// pooled sandbox if one is ready while the pool refills behind
		// them, then each after the pool has refilled.
		wsrv := harness.Start(tb, "--warm-pool", "2")
		waitWarm(wsrv, 2)
		warm := createFirstCommand(ctx, wsrv.Client, *n, "runc")
		taken := strings.Count(wsrv.Logs(), "warm=true")
		var paced []time.Duration
		for i := 0; i < *n; i++ {
			waitWarm(wsrv, 2)
			paced = append(paced, createFirstCommand(ctx, wsrv.Client, 1, "runc")...)
		}
		fmt.Printf("warm pool: %d of %d back-to-back creates took a pooled sandbox\n", taken, *n)
		rows = append(rows, row{"warm pool: create → `echo hi` done, back to back, vs `runc run` (runc's default spec)", warm, raw, ""})
		rows = append(rows, row{"warm pool: create → `echo hi` done, pool refilled between creates, vs `runc run` (runc's default spec)", paced, raw, ""})
		wsrv.Stop()
	}

	if want["runsc"] {
		// Warm up runsc too, then the same against raw `runsc run` with
		// the spec and the flags sbx gives a runsc box.
		for i := 0; i < 3; i++ {
			sb := must(c.CreateSandbox(ctx, client.CreateOptions{Runtime: "runsc"}))
			must(sb.Run(ctx, "echo hi", nil))
			sb.Kill(ctx)
		}
		probe := must(c.CreateSandbox(ctx, client.CreateOptions{Runtime: "runsc"}))
		flags := []string{"--shared-root", "/run/sbx/runsc", "--platform", "systrap", "--host-uds", "create", "--network", "none", "--overlay2", "none"}
		rawRunsc := rawRunc(runscBin, flags, *n, filepath.Join(srv.DataDir, "sandboxes", probe.ID, "bundle", "config.json"))
		probe.Kill(ctx)
		gv := createFirstCommand(ctx, c, *n, "runsc")
		rows = append(rows, row{"runsc: create → `echo hi` done, vs `runsc run` (sbx's spec and flags)", gv, rawRunsc, ""})
	}

	if want["rtt"] {
		sb := must(c.CreateSandbox(ctx, client.CreateOptions{}))
		var rt []time.Duration
		for i := 0; i < *rtt; i++ {
			t0 := time.Now()
			code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "true"})
			if err != nil || code != 0 {
				fatalf("true: %d %v", code, err)
			}
			rt = append(rt, time.Since(t0))
		}
		sb.Kill(ctx)
		// The command's own cost: fork and exec of `true` on the host, from Go.
		var host []time.Duration
		for i := 0; i < *rtt; i++ {
			t0 := time.Now()
			if err := exec.Command("true").Run(); err != nil {
				fatal(err)
			}
			host = append(host, time.Since(t0))
		}
		rows = append(rows, row{"command round trip (`true`), vs fork+exec of `true` on the host", rt, host, ""})
	}

	if want["terminal"] {
		rows = append(rows, terminalRow(ctx, srv, c, *rtt))
	}

	if want["dashboard"] {
		rows = append(rows, dashboardRows(ctx, srv, c, *dashN)...)
	}

	if want["network"] {
		// Networking's cost: the same create → `echo hi`, alternating
		// between this server and one without networking, so both see
		// the same load.
		noNet := harness.Start(tb, "--network", "none")
		for i := 0; i < 3; i++ {
			createEcho(ctx, noNet.Client)
		}
		logsBefore := len(srv.Logs())
		var withNet, withoutNet []time.Duration
		for i := 0; i < *n; i++ {
			withNet = append(withNet, createEcho(ctx, c))
			withoutNet = append(withoutNet, createEcho(ctx, noNet.Client))
		}
		noNet.Stop()
		rows = append(rows, row{"create → `echo hi` done with networking, vs `--network none`", withNet, withoutNet, ""})
		rows = append(rows, row{"network set-up within create (namespaces, veth, rules; server's own timing)", loggedDurations(srv.Logs()[logsBefore:], "network="), nil, ""})
	}

	if len(rows) > 0 {
		fmt.Printf("\n| operation | n | p50 | p99 | raw runtime p50 | raw p99 | ratio p50 |\n|---|---|---|---|---|---|---|\n")
		for _, r := range rows {
			fmt.Println(r.String())
		}
	}

	if want["files"] {
		filesSection(ctx, c, *transferMiB<<20, *transferReps, *small)
	}
	if want["templates"] {
		templatesSection(ctx, srv, c, *n)
	}
	if want["proxy"] {
		benchProxy(ctx, srv, c, *proxyMiB, *proxyReqs, *proxyRuns)
	}
	if want["burst"] {
		burstSection(ctx, *burstN, *defaultPool)
	}
	if want["pool"] {
		poolBurstSection(ctx, *burstN, *poolReps)
	}
	if want["interp"] {
		interpSection(ctx, srv, *interpN, *interpRTT, *interpRuntime)
	}
	if want["sampler"] {
		samplerSection(ctx, *n, *rtt)
	}
	if !want["density"] {
		return
	}

	// Density.
	before := memUsed()
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	t0 := time.Now()
	for i := 0; i < *concurrent; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: client.NoTimeout})
			if err != nil {
				fatal(err)
			}
			mu.Lock()
			ids = append(ids, sb.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	held := time.Since(t0)
	// Every sandbox answers a command while all are held.
	for _, id := range ids {
		s := must(c.ConnectSandbox(ctx, id, nil))
		if r := must(s.Run(ctx, "echo ok", nil)); r.Stdout != "ok\n" {
			fatalf("sandbox %s: %q", id, r.Stdout)
		}
	}
	unix.Sync()
	after := memUsed()
	var inside int64
	for _, id := range ids {
		inside += cgroupMemory(id)
	}
	total := after - before
	outside := total - inside
	fmt.Printf("\n| density | value |\n|---|---|\n")
	fmt.Printf("| sandboxes held at once | %d (created in %s, all answering) |\n", len(ids), held.Round(time.Millisecond))
	fmt.Printf("| host memory used, all sandboxes | %.1f MiB (%.2f MiB each) |\n", mib(total), mib(total)/float64(len(ids)))
	fmt.Printf("| of which charged to the sandboxes' own cgroups (agent, shells, page cache) | %.1f MiB (%.2f MiB each) |\n", mib(inside), mib(inside)/float64(len(ids)))
	fmt.Printf("| host memory per idle sandbox outside its own processes | %.2f MiB |\n", mib(outside)/float64(len(ids)))
	for _, id := range ids {
		c.KillSandbox(ctx, id)
	}
}

// createEcho creates a sandbox, runs `echo hi` in it, kills it, and returns
// the time from the create request to the command's end.
func createEcho(ctx context.Context, c *client.Client) time.Duration {
	t0 := time.Now()
	sb := must(c.CreateSandbox(ctx, client.CreateOptions{}))
	var out strings.Builder
	code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "echo", Args: []string{"hi"}, Stdout: &out})
	d := time.Since(t0)
	if err != nil || code != 0 || out.String() != "hi\n" {
		fatalf("echo hi: %d %v %q", code, err, out.String())
	}
	if err := sb.Kill(ctx); err != nil {
		fatal(err)
	}
	return d
}

// waitWarm waits until srv's warm pool holds n sandboxes.
func waitWarm(srv *harness.Server, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if srv.Pooled() >= n {
			return
		}
		if time.Now().After(deadline) {
			fatalf("the warm pool did not fill (%d sandboxes)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loggedDurations returns the values of key (such as "network=") in the
// server's "sandbox started" debug lines.
func loggedDurations(logs, key string) []time.Duration {
	var out []time.Duration
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `msg="sandbox started"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key); ok {
				if d, err := time.ParseDuration(v); err == nil {
					out = append(out, d)
				}
			}
		}
	}
	if len(out) == 0 {
		fatalf("no %s in the server's logs", key)
	}
	return out
}

// createFirstCommand times n creates of a sandbox on runtime rt, each until
// `echo hi` in it has finished, killing each after.
func createFirstCommand(ctx context.Context, c *client.Client, n int, rt string) []time.Duration {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		sb := must(c.CreateSandbox(ctx, client.CreateOptions{Runtime: rt}))
		var out strings.Builder
		code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "echo", Args: []string{"hi"}, Stdout: &out})
		d := time.Since(t0)
		if err != nil || code != 0 || out.String() != "hi\n" {
			fatalf("%s: echo hi: %d %v %q", rt, code, err, out.String())
		}
		ds = append(ds, d)
		if err := sb.Kill(ctx); err != nil {
			fatal(err)
		}
	}
	return ds
}

type row struct {
	name     string
	d, raw   []time.Duration
	rawLabel string
}

func (r row) String() string {
	p50, p99 := pct(r.d, 50), pct(r.d, 99)
	if len(r.raw) == 0 {
		return fmt.Sprintf("| %s | %d | %s | %s | – | – | – |", r.name, len(r.d), ms(p50), ms(p99))
	}
	rp50, rp99 := pct(r.raw, 50), pct(r.raw, 99)
	return fmt.Sprintf("| %s | %d | %s | %s | %s | %s | %.2f× |", r.name, len(r.d), ms(p50), ms(p99), ms(rp50), ms(rp99), float64(p50)/float64(rp50))
}

var ms, pct = benchutil.MS, benchutil.Pct

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// rawRunc times `<bin> [flags] run` (runc or runsc) of `echo hi` n times in
// a raw box (see rawbox.New: runc's default spec with specFrom empty, else
// that sandbox spec).
func rawRunc(bin string, flags []string, n int, specFrom string) []time.Duration {
	box, err := rawbox.New(tb.TempDir(), specFrom, []string{"/bin/echo", "hi"})
	if err != nil {
		fatal(err)
	}
	defer box.Close()
	bundle, root := box.Bundle, box.Root
	tb.Cleanup(rawbox.RemoveCgroupParent)
	var out []time.Duration
	for i := 0; i < n+3; i++ {
		id := "bench-raw-" + strconv.Itoa(i)
		t0 := time.Now()
		args := append(append([]string{"--root", root}, flags...), "run", "--bundle", bundle, id)
		cmd := exec.Command(bin, args...)
		o, err := cmd.CombinedOutput()
		d := time.Since(t0)
		if err != nil || strings.TrimSpace(string(o)) != "hi" {
			fatalf("%s run: %v %q", filepath.Base(bin), err, o)
		}
		if bin == runscBin {
			// runsc leaves a stopped container's state until deleted.
			exec.Command(bin, "--root", root, "delete", "--force", id).Run()
		}
		if i >= 3 { // the first runs warm caches, as for sbx
			out = append(out, d)
		}
	}
	return out
}

// memUsed returns MemTotal - MemAvailable.
func memUsed() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	var total, avail int64
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			avail = v << 10
		}
	}
	return total - avail
}

// cgroupMemory reads a sandbox's memory usage from its cgroup (v1 or v2).
func cgroupMemory(id string) int64 {
	for _, p := range []string{
		"/sys/fs/cgroup/memory/sbx/" + id + "/memory.usage_in_bytes",
		"/sys/fs/cgroup/sbx/" + id + "/memory.current",
	} {
		if b, err := os.ReadFile(p); err == nil {
			v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return v
		}
	}
	return 0
}

func must[T any](v T, err error) T {
	if err != nil {
		fatal(err)
	}
	return v
}

// tb runs the harness outside `go test`; fatal errors go through it so that
// the server and its sandboxes are cleaned up before exiting.
var tb = &benchutil.T{}

func fatal(args ...any)                 { tb.Fatal(args...) }
func fatalf(format string, args ...any) { tb.Fatalf(format, args...) }
