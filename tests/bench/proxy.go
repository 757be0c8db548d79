package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// benchProxy measures the data-plane proxy against a direct connection to
// the same server in the same sandbox, in the same run:
//
//   - throughput: a download of mib MiB from a server in the sandbox
//     (tests/e2e/testdata/preview-server.js, /bytes), through sbx (Host
//     routing, HTTP/1.1; and from an h2c client) and directly, two ways;
//   - latency: requests sequential GETs of a small response, through sbx and
//     directly, interleaved one by one.
//
// "Directly" is measured two ways. To the sandbox's address: a client on
// the host connecting to the sandbox's own IP (its veth), the connection
// the target compares with. And, stricter, to the server's
// 127.0.0.1:PORT from inside the sandbox's network namespace: the dialling
// thread enters it (setns, through the box's init pid) for the socket()
// call, then the connection is used as any other: one loopback TCP
// connection, with no veth or netfilter in the path.
func benchProxy(ctx context.Context, srv *harness.Server, c *client.Client, mib, requests, runs int) {
	sb := must(c.CreateSandbox(ctx, client.CreateOptions{Timeout: client.NoTimeout}))
	defer sb.Kill(ctx)
	script := must(os.ReadFile(filepath.Join(harness.RepoRoot(), "tests", "e2e", "testdata", "preview-server.js")))
	must(sb.WriteFile(ctx, "/tmp/preview-server.js", bytes.NewReader(script), nil))
	out := &lineWaiter{ch: make(chan struct{})}
	must(sb.Start(ctx, client.ExecOptions{Cmd: "node", Args: []string{"/tmp/preview-server.js", "0.0.0.0", "8080"}, Stdout: out}))
	select {
	case <-out.ch:
	case <-time.After(30 * time.Second):
		fatal("the preview server did not start")
	}
	pidb := must(os.ReadFile(filepath.Join(srv.DataDir, "sandboxes", sb.ID, "bundle", "init.pid")))
	pid := must(strconv.Atoi(strings.TrimSpace(string(pidb))))

	direct := &http.Client{Transport: &http.Transport{
		DialContext:        func(ctx context.Context, _, _ string) (net.Conn, error) { return dialInNetns(pid, "127.0.0.1:8080") },
		DisableCompression: true,
	}}
	ip := strings.TrimSpace(must(sb.Run(ctx, "hostname -I", nil)).Stdout)
	if net.ParseIP(ip) == nil {
		fatalf("the sandbox's address: %q", ip)
	}
	toAddr := &http.Client{Transport: &http.Transport{
		DialContext:        func(ctx context.Context, _, _ string) (net.Conn, error) { return net.Dial("tcp", ip+":8080") },
		DisableCompression: true,
	}}
	proxied := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	var h2p http.Protocols
	h2p.SetUnencryptedHTTP2(true)
	proxiedH2 := &http.Client{Transport: &http.Transport{Protocols: &h2p, DisableCompression: true, HTTP2: &http.HTTP2Config{
		// A client built for bulk transfer, as a browser is: large frames
		// and windows.
		MaxReadFrameSize:              1 << 20,
		MaxReceiveBufferPerConnection: 16 << 20,
		MaxReceiveBufferPerStream:     16 << 20,
	}}}
	host := sb.Host(8080)
	readBuf := make([]byte, 1<<20)
	get := func(hc *http.Client, path string, viaSbx bool) (int64, time.Duration) {
		url := "http://127.0.0.1:8080" + path
		if viaSbx {
			url = srv.URL + path
		}
		req := must(http.NewRequestWithContext(ctx, "GET", url, nil))
		if viaSbx {
			req.Host = host
		}
		t0 := time.Now()
		resp := must(hc.Do(req))
		// A large read buffer (io.Discard's own ReadFrom reads 8 KiB at
		// a time), the same for both paths.
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, resp.Body, readBuf)
		resp.Body.Close()
		d := time.Since(t0)
		if err != nil || resp.StatusCode != 200 {
			fatalf("GET %s: %s %v", path, resp.Status, err)
		}
		return n, d
	}

	// Throughput, interleaved runs; the median of each.
	size := int64(mib) << 20
	path := "/bytes?n=" + strconv.FormatInt(size, 10)
	get(direct, "/bytes?n=1048576", false) // open the connections
	get(toAddr, "/bytes?n=1048576", false)
	get(proxied, "/bytes?n=1048576", true)
	get(proxiedH2, "/bytes?n=1048576", true)
	serve := servePid(srv.DataDir)
	var dRates, aRates, pRates, hRates []float64
	var serveCPU, agentCPU time.Duration
	rate := func(n int64, d time.Duration) float64 {
		if n != size {
			fatalf("downloaded %d bytes, want %d", n, size)
		}
		return float64(n) / (1 << 20) / d.Seconds()
	}
	for i := 0; i < runs; i++ {
		dRates = append(dRates, rate(get(direct, path, false)))
		aRates = append(aRates, rate(get(toAddr, path, false)))
		s0, a0 := cpuTime(serve), cpuTime(pid)
		pRates = append(pRates, rate(get(proxied, path, true)))
		serveCPU += cpuTime(serve) - s0
		agentCPU += cpuTime(pid) - a0
		hRates = append(hRates, rate(get(proxiedH2, path, true)))
	}
	dr, ar, pr, hr := median(dRates), median(aRates), median(pRates), median(hRates)
	fmt.Printf("\n| download of %d MiB from a server in the sandbox (median of %d) | MiB/s | vs the sandbox's address | vs its loopback | target |\n|---|---|---|---|---|\n", mib, runs)
	fmt.Printf("| direct to the sandbox's address (host → %s:8080, its veth) | %.0f | 1.00× | %.2f× | |\n", ip, ar, ar/dr)
	fmt.Printf("| direct on its loopback (client inside the sandbox's network namespace) | %.0f | %.2f× | 1.00× | |\n", dr, dr/ar)
	fmt.Printf("| through sbx, HTTP/1.1 (Host routing) | %.0f | %.2f× | %.2f× | ≥ 0.70× of a direct connection to the sandbox's address |\n", pr, pr/ar, pr/dr)
	fmt.Printf("| through sbx, h2c client → HTTP/1.1 server | %.0f | %.2f× | %.2f× | |\n", hr, hr/ar, hr/dr)
	fmt.Printf("(runs, MiB/s: to the address %s; on its loopback %s; sbx %s; sbx h2c %s)\n", rates(aRates), rates(dRates), rates(pRates), rates(hRates))
	gib := float64(size) * float64(runs) / (1 << 30)
	fmt.Printf("CPU per GiB through sbx (HTTP/1.1): sbx serve %.2f s, the sandbox's agent %.2f s\n",
		serveCPU.Seconds()/gib, agentCPU.Seconds()/gib)

	// The same download with curl, a client slower than the Go one above
	// (its own copy to /dev/null), as most real clients are: direct to
	// the sandbox's address and through sbx, interleaved.
	curl := func(url, host string) float64 {
		args := []string{"-s", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}", url}
		if host != "" {
			args = append(args, "-H", "Host: "+host)
		}
		out, err := exec.CommandContext(ctx, "curl", args...).Output()
		var n int64
		var bps float64
		if _, serr := fmt.Sscan(string(out), &n, &bps); err != nil || serr != nil || n != size {
			fatalf("curl %s: %q %v %v", url, out, err, serr)
		}
		return bps / (1 << 20)
	}
	var caRates, cpRates []float64
	for i := 0; i < runs; i++ {
		caRates = append(caRates, curl("http://"+ip+":8080"+path, ""))
		cpRates = append(cpRates, curl(srv.URL+path, host))
	}
	ca, cp := median(caRates), median(cpRates)
	fmt.Printf("| curl: direct to the sandbox's address | %.0f | 1.00× | | |\n", ca)
	fmt.Printf("| curl: through sbx, HTTP/1.1 (Host routing) | %.0f | %.2f× | | |\n", cp, cp/ca)
	fmt.Printf("(curl runs, MiB/s: to the address %s; sbx %s)\n", rates(caRates), rates(cpRates))

	// Latency, interleaved one by one after a warm-up.
	for i := 0; i < 50; i++ {
		get(direct, "/hello", false)
		get(proxied, "/hello", true)
	}
	var dl, pl []time.Duration
	for i := 0; i < requests; i++ {
		_, d := get(direct, "/hello", false)
		dl = append(dl, d)
		_, p := get(proxied, "/hello", true)
		pl = append(pl, p)
	}
	fmt.Printf("\n| request (GET, small response, keep-alive) | n | p50 | p99 | direct p50 | direct p99 | overhead p50 | target |\n|---|---|---|---|---|---|---|---|\n")
	fmt.Printf("| through sbx (Host routing) vs direct | %d | %s | %s | %s | %s | %s | ≤ 1 ms |\n",
		requests, us(pct(pl, 50)), us(pct(pl, 99)), us(pct(dl, 50)), us(pct(dl, 99)), us(pct(pl, 50)-pct(dl, 50)))
}

// dialInNetns connects to addr from inside the network namespace of
// process pid. The dialling goroutine's thread enters the namespace and is
// never returned to the scheduler's pool (the goroutine exits locked, so the
// runtime ends the thread): no other goroutine runs in the sandbox's
// namespace by accident.
func dialInNetns(pid int, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		c, err := net.Dial("tcp", addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// lineWaiter closes ch once "ready" has been written to it.
type lineWaiter struct {
	buf  []byte
	ch   chan struct{}
	done bool
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if !w.done && bytes.Contains(w.buf, []byte("ready")) {
		w.done = true
		close(w.ch)
	}
	return len(p), nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func rates(v []float64) string {
	var parts []string
	for _, r := range v {
		parts = append(parts, fmt.Sprintf("%.0f", r))
	}
	return strings.Join(parts, ", ")
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

// servePid finds the sbx serve process using dataDir.
func servePid(dataDir string) int {
	ents := must(os.ReadDir("/proc"))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) > 1 && args[1] == "serve" && strings.Contains(string(cmd), "\x00"+dataDir+"\x00") {
			return pid
		}
	}
	fatalf("no sbx serve process for %s", dataDir)
	return 0
}

// cpuTime is the user and system CPU time process pid has used.
func cpuTime(pid int) time.Duration {
	b := must(os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)))
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}
