package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/interp"
	"github.com/sbxdev/sbx/tests/harness"
)

// interpSection measures the code interpreter, each figure beside the same
// code on an IPython kernel on the host run by internal/interp directly
// (the server sbx runs in a sandbox, over loopback HTTP) in the same run:
//
//   - runCode('1+1') round trip in a warm context, through sbx (the proxy,
//     the sandbox's port) vs the local server;
//   - create → first runCode('1+1') result, from the code interpreter's
//     own warm pool (--warm-pool-template, refilled between creates) and
//     cold (a server without one), vs starting a local server's kernel →
//     first result.
func interpSection(ctx context.Context, srv *harness.Server, n, rtt int, rt string) {
	c := srv.Client
	// The template, built once (cached with the base one).
	out, stderr, code := srv.CLI(ctx, nil, "template", "build", "code-interpreter-v1")
	if code != 0 {
		fatalf("sbx template build code-interpreter-v1: exit %d %s %s", code, out, stderr)
	}

	// The host's Debian python3 with IPython (scripts/setup.sh installs
	// it), not whatever python3 comes first in PATH.
	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import IPython, matplotlib_inline, matplotlib").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		fatalf("no python3 with IPython and matplotlib on the host: run scripts/setup.sh (apt-get install python3-ipykernel python3-matplotlib)")
	}
	local := func() (*interp.Server, *httptest.Server) {
		s := interp.New(interp.Config{Python: py, Cwd: tb.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		return s, httptest.NewServer(s.Handler())
	}

	// Round trip in a warm context.
	sb := must(c.CreateSandbox(ctx, client.CreateOptions{Template: "code-interpreter-v1", Runtime: rt}))
	for range 5 {
		runOne(ctx, sb)
	}
	var viaSbx []time.Duration
	for range rtt {
		t0 := time.Now()
		runOne(ctx, sb)
		viaSbx = append(viaSbx, time.Since(t0))
	}
	sb.Kill(ctx)
	ls, hs := local()
	for range 5 {
		localRun(ctx, hs.URL)
	}
	var direct []time.Duration
	for range rtt {
		t0 := time.Now()
		localRun(ctx, hs.URL)
		direct = append(direct, time.Since(t0))
	}
	hs.Close()
	ls.Close()

	// A local kernel's start → first result.
	var localCold []time.Duration
	for range n {
		t0 := time.Now()
		ls, hs := local()
		localRun(ctx, hs.URL)
		localCold = append(localCold, time.Since(t0))
		hs.Close()
		ls.Close()
	}

	// Cold: this server has no pool of the template.
	var cold []time.Duration
	for range n {
		t0 := time.Now()
		sb := must(c.CreateSandbox(ctx, client.CreateOptions{Template: "code-interpreter-v1", Runtime: rt}))
		runOne(ctx, sb)
		cold = append(cold, time.Since(t0))
		sb.Kill(ctx)
	}

	// From the pool, refilled before each create.
	wsrv := harness.Start(tb, "--warm-pool", "0", "--warm-pool-template", "code-interpreter-v1=1", "--runtime", rt)
	ready := regexp.MustCompile(`msg="warm sandbox ready" sandbox_id=[a-z0-9]{20} template=code-interpreter-v1`)
	// The split: the create alone, its first runCode, and a second one
	// (no first-use costs left) in the same sandbox.
	var pooled, creates, firsts, seconds []time.Duration
	taken := 0
	for i := range n {
		deadline := time.Now().Add(3 * time.Minute)
		for len(ready.FindAllString(wsrv.Logs(), -1)) <= i {
			if time.Now().After(deadline) {
				fatalf("the code interpreter's pool did not refill")
			}
			time.Sleep(20 * time.Millisecond)
		}
		before := strings.Count(wsrv.Logs(), "warm=true")
		t0 := time.Now()
		sb := must(wsrv.Client.CreateSandbox(ctx, client.CreateOptions{Template: "code-interpreter-v1", Runtime: rt}))
		t1 := time.Now()
		runOne(ctx, sb)
		t2 := time.Now()
		runOne(ctx, sb)
		pooled = append(pooled, t1.Sub(t0)+t2.Sub(t1))
		creates = append(creates, t1.Sub(t0))
		firsts = append(firsts, t2.Sub(t1))
		seconds = append(seconds, time.Since(t2))
		taken += strings.Count(wsrv.Logs(), "warm=true") - before
		sb.Kill(ctx)
	}
	poolBytes := lastLogged(wsrv.Logs(), "pool_bytes=")
	wsrv.Stop()
	fmt.Printf("\ncode interpreter (%s): a pooled sandbox (default kernel started) uses %.1f MiB, as its cgroup tells\n", rt, mib(poolBytes))
	fmt.Printf("code interpreter (%s): from the pool, split: create p50 %s, its first runCode('1+1') p50 %s, a second one p50 %s\n",
		rt, ms(pct(creates, 50)), ms(pct(firsts, 50)), ms(pct(seconds, 50)))

	rows := []row{
		{fmt.Sprintf("code interpreter (%s): runCode('1+1') round trip, warm context, vs internal/interp on the host", rt), viaSbx, direct, ""},
		{fmt.Sprintf("code interpreter (%s): create → first runCode('1+1') result, from the pool (%d of %d pooled), vs a host kernel's start → first result", rt, taken, n), pooled, localCold, ""},
		{fmt.Sprintf("code interpreter (%s): create → first runCode('1+1') result, cold, vs a host kernel's start → first result", rt), cold, localCold, ""},
	}
	fmt.Printf("\n| operation | n | p50 | p99 | host kernel p50 | host p99 | ratio p50 |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Println(r.String())
	}
}

// runOne runs 1+1 in sb's default Python context and checks the answer.
func runOne(ctx context.Context, sb *client.Sandbox) {
	ex, err := sb.RunCode(ctx, "1+1", nil)
	if err != nil || ex.Error != nil || ex.Text() != "2" {
		fatalf("runCode('1+1') in %s: %+v %v", sb.ID, ex, err)
	}
}

// localRun runs 1+1 on the local server at url, as RunCode would, and
// checks the answer.
func localRun(ctx context.Context, url string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/execute", strings.NewReader(`{"code":"1+1"}`))
	if err != nil {
		fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	text := ""
	for sc.Scan() {
		var m struct {
			Type string `json:"type"`
			Text string `json:"text"`
			Main bool   `json:"is_main_result"`
		}
		if json.Unmarshal(bytes.TrimSpace(sc.Bytes()), &m) == nil && m.Type == "result" && m.Main {
			text = m.Text
		}
	}
	if text != "2" {
		fatalf("local runCode('1+1'): %q (HTTP %s)", text, strconv.Itoa(resp.StatusCode))
	}
}
