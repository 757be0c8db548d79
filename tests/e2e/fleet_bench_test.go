package e2e

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
)

// BenchmarkFleet measures a fleet of network-namespace nodes on this one
// machine (docs/benchmarks.md, "Fleet"); it does its own fixed amount of
// work, so run it once:
//
//	go test -run '^$' -bench Fleet -benchtime 1x -timeout 30m ./tests/e2e
//
// create throughput through one node alone and through n1 of three
// (creates → `true` → kill, 4 at a time); the exec round trip and a 1 GiB
// download for n2's sandbox through n2 (the owner) and through n1; and the
// time from a node's SIGKILL to its sandbox's failed event.
func BenchmarkFleet(b *testing.B) {
	const creates, parallel, rtts = 24, 4, 200
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	throughput := func(c *client.Client) float64 {
		t0 := time.Now()
		var wg sync.WaitGroup
		work := make(chan int)
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
					if err != nil {
						b.Error(err)
						continue
					}
					if _, err := sb.Run(ctx, "true", nil); err != nil {
						b.Error(err)
					}
					if err := c.KillSandbox(ctx, sb.ID); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for i := range creates {
			work <- i
		}
		close(work)
		wg.Wait()
		return creates / time.Since(t0).Seconds()
	}

	_, _, one := startNetnsFleet(b, 1)
	b.ReportMetric(throughput(one[0].Client), "creates/s-1node")
	one[0].Stop()

	db, _, nodes := startNetnsFleet(b, 3, "--placement-k", "3")
	b.ReportMetric(throughput(nodes[0].Client), "creates/s-3nodes")

	by := spreadOne(b, ctx, db, nodes[0].Client, 3)
	far := by["n2"]
	owner, err := nodes[1].Client.ConnectSandbox(ctx, far.ID, nil)
	if err != nil {
		b.Fatal(err)
	}
	via, err := nodes[0].Client.ConnectSandbox(ctx, far.ID, nil)
	if err != nil {
		b.Fatal(err)
	}
	rtt := func(sb *client.Sandbox) time.Duration {
		lat := make([]time.Duration, 0, rtts)
		for range rtts {
			t0 := time.Now()
			if _, err := sb.Run(ctx, "true", nil); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		return lat[len(lat)/2]
	}
	rtt(owner) // warm both paths
	rtt(via)
	b.ReportMetric(float64(rtt(owner).Microseconds()), "exec-p50-µs-owner")
	b.ReportMetric(float64(rtt(via).Microseconds()), "exec-p50-µs-nonowner")

	if res, err := far.Run(ctx, "head -c 1073741824 /dev/urandom > /tmp/gib", nil); err != nil || res.ExitCode != 0 {
		b.Fatalf("write 1 GiB: %+v, %v", res, err)
	}
	download := func(sb *client.Sandbox) float64 {
		t0 := time.Now()
		r, _, err := sb.OpenFile(ctx, "/tmp/gib", nil)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		r.Close()
		if err != nil || n != 1<<30 {
			b.Fatalf("download: %d bytes, %v", n, err)
		}
		return float64(n>>20) / time.Since(t0).Seconds()
	}
	for _, path := range []struct {
		name string
		sb   *client.Sandbox
	}{{"owner", owner}, {"nonowner", via}, {"owner", owner}, {"nonowner", via}} {
		b.ReportMetric(download(path.sb), fmt.Sprintf("MiB/s-%s", path.name))
	}

	lost := by["n3"]
	t0 := time.Now()
	nodes[2].Crash()
	awaitFailedEvent(b, ctx, nodes[0].Client, lost.ID, time.Minute)
	b.ReportMetric(time.Since(t0).Seconds(), "s-to-detect-loss")
}
