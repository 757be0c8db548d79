package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/bench/rawbox"
	"github.com/sbxdev/sbx/tests/harness"
)

// burstSection measures what the public sandbox comparisons measure: create
// → first `echo hi` finished, for n creates one after another and then for
// n creates sent at once, each beside raw `runc run` of `echo hi` done the
// same way (one after another, then n at once) in the same run. It does so
// on a server with sbx serve's default warm pool, and the burst again on a
// server started with a pool of n, filled before the burst, counting how
// many creates took a pooled sandbox.
func burstSection(ctx context.Context, n, pool int) {
	raw := newRawBurst(n)
	defer raw.close()
	rawSeq := raw.sequential()
	rawAll := raw.atOnce()

	var rows []row
	def := harness.Start(tb, "--warm-pool", strconv.Itoa(pool))
	waitWarm(def, pool)
	seq := createFirstCommand(ctx, def.Client, n, "runc")
	rows = append(rows, row{fmt.Sprintf("sequential: %d creates → `echo hi` done, warm pool %d (the default), vs `runc run` one after another", n, pool), seq, rawSeq, ""})
	waitWarm(def, pool)
	all, taken := countedBurst(ctx, def, n)
	rows = append(rows, row{fmt.Sprintf("burst: %d creates at once → `echo hi` done, warm pool %d (%d pooled), vs %d `runc run` at once", n, pool, taken, n), all, rawAll, ""})
	def.Stop()

	big := harness.Start(tb, "--warm-pool", strconv.Itoa(n))
	t0 := time.Now()
	waitWarm(big, n)
	filled := time.Since(t0)
	poolBytes := lastLogged(big.Logs(), "pool_bytes=")
	all, taken = countedBurst(ctx, big, n)
	rows = append(rows, row{fmt.Sprintf("burst: %d creates at once → `echo hi` done, warm pool %d (%d pooled), vs %d `runc run` at once", n, n, taken, n), all, rawAll, ""})
	big.Stop()

	fmt.Printf("\nburst: the pool of %d filled in %s from start; its sandboxes use %.1f MiB together (%.2f MiB each), as their cgroups tell\n", n, filled.Round(time.Millisecond), mib(poolBytes), mib(poolBytes)/float64(n))
	fmt.Printf("\n| operation | n | p50 | p99 | raw runtime p50 | raw p99 | ratio p50 |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Println(r.String())
	}
}

// lastLogged returns the last value of key (such as "pool_bytes=") in the
// server's log.
func lastLogged(logs, key string) int64 {
	var v int64
	for _, f := range strings.Fields(logs) {
		if s, ok := strings.CutPrefix(f, key); ok {
			v, _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return v
}

// countedBurst is burst on srv, with how many of its creates took a
// pooled sandbox (as the server logged them).
func countedBurst(ctx context.Context, srv *harness.Server, n int) ([]time.Duration, int) {
	before := strings.Count(srv.Logs(), "warm=true")
	ds := burst(ctx, srv.Client, n)
	return ds, strings.Count(srv.Logs(), "warm=true") - before
}

// burst sends n creates at once, each followed by `echo hi`, and returns
// each one's time from its create request to its command's end. The
// sandboxes are killed once every one has answered.
func burst(ctx context.Context, c *client.Client, n int) []time.Duration {
	ds := make([]time.Duration, n)
	sbs := make([]*client.Sandbox, n)
	errs := make([]error, n)
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			t0 := time.Now()
			sb, err := c.CreateSandbox(ctx, client.CreateOptions{})
			if err != nil {
				errs[i] = err
				return
			}
			sbs[i] = sb
			var out strings.Builder
			code, err := sb.Exec(ctx, client.ExecOptions{Cmd: "echo", Args: []string{"hi"}, Stdout: &out})
			ds[i] = time.Since(t0)
			if err == nil && (code != 0 || out.String() != "hi\n") {
				err = fmt.Errorf("echo hi: exit %d, %q", code, out.String())
			}
			errs[i] = err
		}()
	}
	start.Done()
	wg.Wait()
	for i, sb := range sbs {
		if sb != nil {
			if err := sb.Kill(ctx); err != nil && errs[i] == nil {
				errs[i] = err
			}
		}
	}
	for _, err := range errs {
		if err != nil {
			fatalf("burst: %v", err)
		}
	}
	return ds
}

// rawBurst runs `runc run` of `echo hi` in raw boxes that share one root
// filesystem (the base template through one overlay, runc's default spec),
// each with a bundle of its own so that n of them can run at once.
type rawBurst struct {
	box     *rawbox.Box
	bundles []string
}

func newRawBurst(n int) *rawBurst {
	box, err := rawbox.New(tb.TempDir(), "", []string{"/bin/echo", "hi"})
	if err != nil {
		fatal(err)
	}
	tb.Cleanup(rawbox.RemoveCgroupParent)
	raw, err := os.ReadFile(filepath.Join(box.Bundle, "config.json"))
	if err != nil {
		fatal(err)
	}
	r := &rawBurst{box: box}
	for i := range n {
		var spec map[string]any
		if err := json.Unmarshal(raw, &spec); err != nil {
			fatal(err)
		}
		spec["root"] = map[string]any{"path": filepath.Join(box.Bundle, "rootfs"), "readonly": false}
		spec["linux"].(map[string]any)["cgroupsPath"] = "/sbx-bench/burst-" + strconv.Itoa(i)
		dir := filepath.Join(tb.TempDir(), "bundle")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fatal(err)
		}
		out, _ := json.Marshal(spec)
		if err := os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644); err != nil {
			fatal(err)
		}
		r.bundles = append(r.bundles, dir)
	}
	// Warm caches, as the servers' first creates do.
	for i := range 3 {
		r.run(i, "warm")
	}
	return r
}

func (r *rawBurst) close() { r.box.Close() }

// run times one `runc run` of bundle i under a fresh container id.
func (r *rawBurst) run(i int, tag string) time.Duration {
	id := fmt.Sprintf("bench-burst-%s-%d", tag, i)
	t0 := time.Now()
	out, err := exec.Command(runcBin, "--root", r.box.Root, "run", "--bundle", r.bundles[i], id).CombinedOutput()
	d := time.Since(t0)
	if err != nil || strings.TrimSpace(string(out)) != "hi" {
		fatalf("runc run %s: %v %q", id, err, out)
	}
	return d
}

func (r *rawBurst) sequential() []time.Duration {
	var ds []time.Duration
	for i := range r.bundles {
		ds = append(ds, r.run(i, "seq"))
	}
	return ds
}

func (r *rawBurst) atOnce() []time.Duration {
	ds := make([]time.Duration, len(r.bundles))
	var start, wg sync.WaitGroup
	start.Add(1)
	for i := range r.bundles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			ds[i] = r.run(i, "burst")
		}()
	}
	start.Done()
	wg.Wait()
	return ds
}

// poolBurstSection is the last part of the burst section alone, for
// profiling and quick comparisons: a server started with a pool of n,
// filled, then reps bursts of n creates at once (the pool refilled in
// between), each beside n raw `runc run` at once. With SBX_BENCH_PERF set
// to a file, `perf record -a -g` runs during the first burst only and
// writes there.
func poolBurstSection(ctx context.Context, n, reps int) {
	raw := newRawBurst(n)
	defer raw.close()
	srv := harness.Start(tb, "--warm-pool", strconv.Itoa(n))
	defer srv.Stop()
	var rows []row
	for rep := range reps {
		waitWarm(srv, n)
		var perf *exec.Cmd
		if out := os.Getenv("SBX_BENCH_PERF"); out != "" && rep == 0 {
			perf = exec.Command("perf", "record", "-q", "-a", "-g", "-o", out)
			if err := perf.Start(); err != nil {
				fatalf("perf: %v", err)
			}
			time.Sleep(500 * time.Millisecond) // perf's own start, outside the burst
		}
		all, taken := countedBurst(ctx, srv, n)
		if perf != nil {
			_ = perf.Process.Signal(os.Interrupt)
			_ = perf.Wait()
		}
		rawAll := raw.atOnce()
		rows = append(rows, row{fmt.Sprintf("burst %d: %d creates at once → `echo hi` done, warm pool %d (%d pooled), vs %d `runc run` at once", rep+1, n, n, taken, n), all, rawAll, ""})
	}
	fmt.Printf("\n| operation | n | p50 | p99 | raw runtime p50 | raw p99 | ratio p50 |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Println(r.String())
	}
}
