package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
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

// BenchmarkFleetRecover measures the loss of a node with a persistent
// sandbox (docs/benchmarks.md, "Fleet: node loss and recovery"): three
// loopback nodes sharing the test Postgres and SeaweedFS; n1 holds a
// persistent sandbox with a snapshot in the bucket and an ephemeral one,
// and is SIGKILLed. It reports the time from the kill to the ephemeral
// sandbox's failed event (the loss detected and settled), to the
// persistent sandbox's record running on another node, and to a first
// command answered by it through n2. Run it once, on either runtime:
//
//	go test -run '^$' -bench FleetRecover -benchtime 1x -timeout 20m ./tests/e2e
func BenchmarkFleetRecover(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ep, bucket, ak, sk := harness.S3(b)
	b.Setenv("AWS_ACCESS_KEY_ID", ak)
	b.Setenv("AWS_SECRET_ACCESS_KEY", sk)
	dsn, nodes := startFleet(b, 3, "--object-store", fmt.Sprintf("s3://%s/bench-recover-%d?endpoint=%s", bucket, os.Getpid(), ep))
	db, err := store.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	n1, n2 := nodes[0], nodes[1]
	kept := createOn(b, ctx, n1, `{"templateID":"base","timeout":600,"lifecycle":"persistent"}`)
	if _, err := kept.Run(ctx, "head -c 64M /dev/urandom > /home/user/data", nil); err != nil {
		b.Fatal(err)
	}
	if _, err := kept.CreateSnapshot(ctx, ""); err != nil {
		b.Fatal(err)
	}
	eph := createOn(b, ctx, n1, `{"templateID":"base","timeout":600}`)

	t0 := time.Now()
	n1.Crash()
	awaitFailedEvent(b, ctx, n2.Client, eph.ID, time.Minute)
	b.ReportMetric(time.Since(t0).Seconds(), "s-to-detect-loss")
	for deadline := time.Now().Add(5 * time.Minute); ; {
		rec, err := db.GetSandbox(ctx, kept.ID)
		if err != nil {
			b.Fatal(err)
		}
		if rec.Node != "n1" && rec.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not recovered: %s on %s", rec.State, rec.Node)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.ReportMetric(time.Since(t0).Seconds(), "s-to-running-elsewhere")
	via, err := n2.Client.ConnectSandbox(ctx, kept.ID, nil)
	if err != nil {
		b.Fatal(err)
	}
	if res, err := via.Run(ctx, "stat -c %s /home/user/data", nil); err != nil || res.Stdout != "67108864\n" {
		b.Fatalf("the recovered sandbox's file: %+v, %v", res, err)
	}
	b.ReportMetric(time.Since(t0).Seconds(), "s-to-first-exec")
	n1.StartAgain() // kills the boxes it left before the cleanup
}
