package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/bench/benchutil"
	"github.com/sbxdev/sbx/tests/harness"
)

// samplerSection measures what the metrics sampler costs with n running
// sandboxes: sbx serve's CPU time while idle and the command round trip on
// a server sampling every second beside one whose sampler is idle (an
// interval of an hour), each holding n sandboxes, measured in alternation
// so that both see the same load; and the wall time of a round, from the
// sampling server's log.
func samplerSection(ctx context.Context, n, rtt int) {
	type server struct {
		srv *harness.Server
		ids []string
		sb  *client.Sandbox
		cpu time.Duration
		rt  []time.Duration
	}
	start := func(interval string) *server {
		srv := harness.Start(tb, "--metrics-interval", interval)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		var first *client.Sandbox
		var ids []string
		var mu sync.Mutex
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				sb := must(srv.Client.CreateSandbox(ctx, client.CreateOptions{Timeout: client.NoTimeout}))
				mu.Lock()
				ids = append(ids, sb.ID)
				if first == nil {
					first = sb
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		return &server{srv: srv, ids: ids, sb: first}
	}
	on, off := start("1s"), start("1h")
	const idle = 15 * time.Second
	for range 2 {
		for _, s := range []*server{on, off} {
			pid := s.srv.Pid()
			c0 := cpuTime(pid)
			time.Sleep(idle)
			s.cpu += cpuTime(pid) - c0
		}
		for range rtt / 2 {
			for _, s := range []*server{on, off} {
				t0 := time.Now()
				code, err := s.sb.Exec(ctx, client.ExecOptions{Cmd: "true"})
				if err != nil || code != 0 {
					fatalf("true: %d %v", code, err)
				}
				s.rt = append(s.rt, time.Since(t0))
			}
		}
	}
	var rounds []time.Duration
	for _, line := range strings.Split(on.srv.Logs(), "\n") {
		if !strings.Contains(line, `msg="metrics sampled"`) || !strings.Contains(line, fmt.Sprintf("sandboxes=%d ", n)) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "sample_time="); ok {
				if d, err := time.ParseDuration(v); err == nil {
					rounds = append(rounds, d)
				}
			}
		}
	}
	secs := 2 * idle.Seconds()
	perSec := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / secs }
	fmt.Printf("\n| sampler, %d running sandboxes per server | sampling every 1 s | sampler idle (1 h) |\n|---|---|---|\n", n)
	fmt.Printf("| sbx serve CPU while idle | %.1f ms/s | %.1f ms/s |\n", perSec(on.cpu), perSec(off.cpu))
	fmt.Printf("| so CPU per sampling round (the difference) | %.1f ms | |\n", perSec(on.cpu-off.cpu))
	if len(rounds) > 0 {
		fmt.Printf("| wall time of a round (server's log, n=%d) p50 / p99 | %s / %s | |\n", len(rounds), benchutil.MS(benchutil.Pct(rounds, 50)), benchutil.MS(benchutil.Pct(rounds, 99)))
	}
	fmt.Printf("| command round trip (`true`, n=%d each) p50 / p99 | %s / %s | %s / %s |\n", len(on.rt),
		benchutil.MS(benchutil.Pct(on.rt, 50)), benchutil.MS(benchutil.Pct(on.rt, 99)),
		benchutil.MS(benchutil.Pct(off.rt, 50)), benchutil.MS(benchutil.Pct(off.rt, 99)))
	// Killed while the server runs: a server started again on 50
	// sandboxes' networks can fail to (nftables, ENOBUFS), and the
	// harness's clean-up starts one for what is left.
	for _, s := range []*server{on, off} {
		for _, id := range s.ids {
			s.srv.Client.KillSandbox(ctx, id)
		}
		s.srv.Stop()
	}
}
