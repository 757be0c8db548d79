package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/tests/harness"
)

// netServer starts sbx serve on a fresh subnet with a test internet whose
// DNS server is the forwarder's upstream.
func netServer(t *testing.T, args ...string) (*harness.Server, *testInternet) {
	t.Helper()
	harness.Require(t)
	subnet := harness.RandomSubnet(23)
	ti := newTestInternet(t, subnet)
	srv := harness.Start(t, append([]string{"--subnet", subnet, "--dns-upstream", ti.DNS}, args...)...)
	t.Cleanup(func() {
		if t.Failed() {
			logs := srv.Logs()
			t.Logf("server log (last 20000 bytes):\n%s", logs[max(0, len(logs)-20000):])
		}
	})
	return srv, ti
}

// curl runs curl in sb and returns its output and whether it succeeded
// (exit 0 and the test server's answer in the body).
func curl(t *testing.T, ctx context.Context, sb *client.Sandbox, args string) (string, bool) {
	t.Helper()
	res := mustRun(t, ctx, sb, "curl -sS -k -m 3 "+args+" 2>&1; echo \" exit=$?\"", nil)
	out := res.Stdout + res.Stderr
	return out, strings.Contains(out, "INTERNET-OK") && strings.Contains(out, " exit=0")
}

func mustReach(t *testing.T, ctx context.Context, sb *client.Sandbox, args string) string {
	t.Helper()
	out, ok := curl(t, ctx, sb, args)
	if !ok {
		t.Fatalf("curl %s: want the test server's answer, got %q", args, out)
	}
	return out
}

func mustNotReach(t *testing.T, ctx context.Context, sb *client.Sandbox, args string) {
	t.Helper()
	out, ok := curl(t, ctx, sb, args)
	if ok || strings.Contains(out, "INTERNET-OK") {
		t.Fatalf("curl %s: want a failure, got %q", args, out)
	}
	if !strings.Contains(out, "exit=") {
		t.Fatalf("curl %s did not run: %q", args, out)
	}
}

func sandboxAddr(t *testing.T, ctx context.Context, sb *client.Sandbox) netip.Addr {
	t.Helper()
	res := mustRun(t, ctx, sb, "hostname -I", nil)
	a, err := netip.ParseAddr(strings.TrimSpace(res.Stdout))
	if err != nil {
		t.Fatalf("sandbox address %q: %v", res.Stdout, err)
	}
	return a
}

// gateway is the host side of a sandbox's /30: its address minus one.
func gateway(a netip.Addr) netip.Addr { return a.Prev() }

// TestNetworkIsolation: with the default policy (internet allowed) a
// sandbox reaches the test internet by address and by name through sbx's
// DNS, and nothing else: not the metadata address, not the host's services
// on any host address, not another sandbox.
func TestNetworkIsolation(t *testing.T) {
	srv, ti := netServer(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err, srv.Logs())
	}
	nb, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr, nbAddr := sandboxAddr(t, ctx, sb), sandboxAddr(t, ctx, nb)
	if addr == nbAddr || !netip.MustParsePrefix(srv.Subnet).Contains(addr) {
		t.Fatalf("addresses %s and %s in subnet %s", addr, nbAddr, srv.Subnet)
	}

	mustReach(t, ctx, sb, "http://"+ti.A.String()+"/")
	out := mustReach(t, ctx, sb, "http://www.a.test/")
	if !strings.Contains(out, "host=www.a.test") {
		t.Fatalf("by name: %q", out)
	}
	if !slices.Contains(ti.Queries(), "www.a.test") {
		t.Fatalf("the forwarder did not ask the upstream: %v", ti.Queries())
	}
	res := mustRun(t, ctx, sb, "cat /etc/resolv.conf", nil)
	if !strings.Contains(res.Stdout, "nameserver "+gateway(addr).String()) {
		t.Fatalf("resolv.conf: %q", res.Stdout)
	}

	// The metadata address is served (routed to the test internet for the
	// sandboxes' subnet), so a missing rule would show as a success.
	mustNotReach(t, ctx, sb, "http://169.254.169.254/")

	// Host services, on every address of the host.
	hl := newHostListener(t)
	targets := []netip.Addr{gateway(addr), ti.HostAddr}
	targets = append(targets, hostAddrs(t)...)
	for _, a := range targets {
		mustNotReach(t, ctx, sb, fmt.Sprintf("http://%s:%d/", a, hl.Port))
	}
	_, apiPort, _ := strings.Cut(srv.Addr, ":")
	mustNotReach(t, ctx, sb, "http://127.0.0.1:"+apiPort+"/health")
	mustNotReach(t, ctx, sb, fmt.Sprintf("http://%s:%s/health", gateway(addr), apiPort))
	if acc := hl.Accepted(); len(acc) > 0 {
		t.Fatalf("host service reached from %v", acc)
	}

	// The neighbour serves on all its addresses; only it can reach itself.
	if _, err := nb.Start(ctx, client.ExecOptions{Cmd: "python3", Args: []string{"-m", "http.server", "8000"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, nb, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/", "200")
	res = mustRun(t, ctx, sb, fmt.Sprintf("curl -sS -m 3 -o /dev/null -w '%%{http_code}' http://%s:8000/ 2>&1; echo \" exit=$?\"", nbAddr), nil)
	if strings.Contains(res.Stdout, "200") || strings.Contains(res.Stdout, "exit=0") {
		t.Fatalf("sandbox reached its neighbour: %q", res.Stdout)
	}
}

// waitFor polls cmd in sb until its output contains want.
func waitFor(t *testing.T, ctx context.Context, sb *client.Sandbox, cmd, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := mustRun(t, ctx, sb, cmd, nil)
		if strings.Contains(res.Stdout, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never printed %q (last %q)", cmd, want, res.Stdout)
		}
		time.Sleep(100 * time.Millisecond) // polling a server that starts in the sandbox
	}
}

// TestNetworkPolicy drives egress policies through create and update: deny
// all, CIDR allow-lists, domain allow- and deny-lists, and the bypasses a
// sandbox could try (an address learnt elsewhere, a Host or SNI that does
// not match the address).
func TestNetworkPolicy(t *testing.T) {
	srv, ti := netServer(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	A, B := ti.A.String(), ti.B.String()

	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Network: client.DenyAll()})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.GetSandbox(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.AllowInternetAccess == nil || *info.AllowInternetAccess {
		t.Fatalf("allowInternetAccess: %v", info.AllowInternetAccess)
	}

	t.Run("deny all", func(t *testing.T) {
		mustNotReach(t, ctx, sb, "http://"+A+"/")
		// No name resolves, and none reaches the upstream: query names
		// cannot carry data out.
		res := mustRun(t, ctx, sb, "getent hosts secret-data.exfil.a.test; echo rc=$?", nil)
		if !strings.Contains(res.Stdout, "rc=2") {
			t.Fatalf("getent: %q", res.Stdout)
		}
		if slices.Contains(ti.Queries(), "secret-data.exfil.a.test") {
			t.Fatal("a denied query reached the upstream DNS server")
		}
		// DNS to any server is sbx's: asking the test DNS server
		// directly gets the same refusal.
		res = mustRun(t, ctx, sb, fmt.Sprintf(`python3 - <<'EOF'
import socket
q = bytes.fromhex("abcd01000001000000000000") + b"\x06direct\x01a\x04test\x00" + b"\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, (%q, 53))
r = s.recv(512)
print("rcode", r[3] & 15)
EOF`, A), nil)
		if !strings.Contains(res.Stdout, "rcode 5") { // REFUSED
			t.Fatalf("direct DNS: %q %q", res.Stdout, res.Stderr)
		}
		if slices.Contains(ti.Queries(), "direct.a.test") {
			t.Fatal("a direct DNS query bypassed the forwarder")
		}
	})

	t.Run("allow a CIDR", func(t *testing.T) {
		if err := sb.UpdateNetwork(ctx, client.NetworkPolicy{AllowOut: []string{A + "/32"}, DenyOut: []string{"0.0.0.0/0"}}); err != nil {
			t.Fatal(err)
		}
		mustReach(t, ctx, sb, "http://"+A+"/")
		mustNotReach(t, ctx, sb, "http://"+B+"/")
		// A port-restricted entry.
		if err := sb.UpdateNetwork(ctx, client.NetworkPolicy{AllowOut: []string{B + ":443"}, DenyOut: []string{"0.0.0.0/0"}}); err != nil {
			t.Fatal(err)
		}
		mustReach(t, ctx, sb, "https://"+B+"/")
		mustNotReach(t, ctx, sb, "http://"+B+"/")
		mustNotReach(t, ctx, sb, "http://"+A+"/")
	})

	t.Run("allow domains", func(t *testing.T) {
		if err := sb.UpdateNetwork(ctx, client.NetworkPolicy{AllowOut: []string{"*.a.test"}, DenyOut: []string{"0.0.0.0/0"}}); err != nil {
			t.Fatal(err)
		}
		mustReach(t, ctx, sb, "http://www.a.test/")
		mustReach(t, ctx, sb, "https://api.x.a.test/")
		// The wildcard does not cover the apex, nor other names.
		mustNotReach(t, ctx, sb, "http://a.test/")
		mustNotReach(t, ctx, sb, "http://www.b.test/")
		// Bypasses: a denied name on an allowed name's address; an
		// allowed name (Host, SNI) on an address it does not resolve to.
		mustNotReach(t, ctx, sb, "--resolve www.b.test:80:"+A+" http://www.b.test/")
		mustNotReach(t, ctx, sb, "-H 'Host: www.a.test' http://"+B+"/")
		mustNotReach(t, ctx, sb, "--resolve www.a.test:443:"+B+" https://www.a.test/")
		mustNotReach(t, ctx, sb, "https://"+B+"/")
		// Each was refused by the proxy's policy check, by name.
		logs := srv.Logs()
		for _, want := range []string{
			"name=www.b.test",                   // the denied name on an allowed address
			"dst=" + B + ":80 name=www.a.test",  // Host not matching the address
			"dst=" + B + ":443 name=www.a.test", // SNI not matching the address
		} {
			found := false
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, "proxy: connection denied by policy") && strings.Contains(line, "sandbox_id="+sb.ID) && strings.Contains(line, want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no proxy denial with %s in the server log", want)
			}
		}
		// A connection without a name is judged by its address: the
		// address of an allowed name the sandbox resolved passes, any
		// other does not.
		for _, tc := range []struct {
			addr string
			ok   bool
		}{{A, true}, {B, false}} {
			res := mustRun(t, ctx, sb, fmt.Sprintf(`python3 - <<'EOF'
import socket, time
s = socket.create_connection((%q, 80), 3)
time.sleep(1)  # say nothing first, as SSH clients do
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
s.settimeout(3)
try:
    print(s.recv(200))
except OSError as e:
    print("failed", e)
EOF`, tc.addr), nil)
			if got := strings.Contains(res.Stdout, "INTERNET-OK"); got != tc.ok {
				t.Fatalf("nameless connection to %s: got %q %q, want ok=%v", tc.addr, res.Stdout, res.Stderr, tc.ok)
			}
		}
	})

	t.Run("deny domains", func(t *testing.T) {
		if err := sb.UpdateNetwork(ctx, client.NetworkPolicy{DenyOut: []string{"*.b.test"}}); err != nil {
			t.Fatal(err)
		}
		mustReach(t, ctx, sb, "http://www.a.test/")
		mustNotReach(t, ctx, sb, "http://www.b.test/")
		mustNotReach(t, ctx, sb, "--resolve www.b.test:80:"+B+" http://www.b.test/")
		mustNotReach(t, ctx, sb, "--resolve www.b.test:443:"+A+" https://www.b.test/")
		for _, h := range ti.Hits() {
			if strings.HasPrefix(h, "www.b.test") {
				t.Fatalf("a denied name reached the server: %v", ti.Hits())
			}
		}
	})

	t.Run("change while connecting", func(t *testing.T) {
		if err := sb.UpdateNetwork(ctx, client.NetworkPolicy{}); err != nil {
			t.Fatal(err)
		}
		// A loop of new connections, each line "unix-time http-code".
		w := newWatcher()
		p, err := sb.Start(ctx, client.ExecOptions{Cmd: "/bin/bash", Args: []string{"-c",
			fmt.Sprintf(`while true; do s=$(date +%%s.%%N); c=$(curl -s -m 1 -o /dev/null -w '%%{http_code}' http://%s/); echo "$s $c"; sleep 0.05; done`, A)},
			Stdout: w})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Kill(ctx)
		lines := lineReader(w)
		awaitCode := func(code string, since time.Time) time.Duration {
			t.Helper()
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				ts, got, ok := lines(deadline)
				if !ok {
					break
				}
				if ts.After(since) && got == code {
					return ts.Sub(since)
				}
			}
			t.Fatalf("no %s after %v", code, since)
			return 0
		}
		awaitCode("200", time.Now())
		for _, step := range []struct {
			p    client.NetworkPolicy
			code string
		}{
			{*client.DenyAll(), "000"},
			{client.NetworkPolicy{AllowOut: []string{A}, DenyOut: []string{"0.0.0.0/0"}}, "200"},
			{client.NetworkPolicy{DenyOut: []string{A + "/32"}}, "000"},
			{client.NetworkPolicy{}, "200"},
		} {
			if err := sb.UpdateNetwork(ctx, step.p); err != nil {
				t.Fatal(err)
			}
			changed := time.Now()
			// Lines carry each connection's start time. One begun before
			// the change may end the old way; every one begun a second
			// or more after it must obey.
			d := awaitCode(step.code, changed)
			checked := 0
			for {
				ts, got, ok := lines(time.Now().Add(10 * time.Second))
				if !ok {
					t.Fatal("the loop stopped")
				}
				if ts.Sub(changed) >= time.Second {
					if got != step.code {
						t.Fatalf("policy %+v: a connection begun %v after the change got %s", step.p, ts.Sub(changed), got)
					}
					checked++
				}
				if ts.Sub(changed) >= 2*time.Second && checked >= 2 {
					break
				}
			}
			t.Logf("policy %+v: first obeying connection began %v after the change", step.p, d)
		}
	})
}

// lineReader returns a function that reads the next "unix-time code" line
// written to w.
func lineReader(w *watcher) func(deadline time.Time) (time.Time, string, bool) {
	var buf []byte
	return func(deadline time.Time) (time.Time, string, bool) {
		for {
			if i := bytes.IndexByte(buf, '\n'); i >= 0 {
				line := string(buf[:i])
				buf = buf[i+1:]
				f := strings.Fields(line)
				if len(f) != 2 {
					continue
				}
				sec, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					continue
				}
				return time.Unix(0, int64(sec*1e9)), f[1], true
			}
			select {
			case b := <-w.ch:
				buf = append(buf, b...)
			case <-time.After(time.Until(deadline)):
				return time.Time{}, "", false
			}
		}
	}
}

// TestNetworkBadInput: malformed policies get 400 in E2B's error shape, at
// create and update; unknown sandboxes 404.
func TestNetworkBadInput(t *testing.T) {
	srv, _ := netServer(t)
	ctx := ctxFor(t, 3*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("X-API-Key", srv.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var m map[string]any
		json.Unmarshal(data, &m)
		return resp.StatusCode, m
	}
	bad := []string{
		`{"allowOut": ["10.0.0.0/33"]}`,
		`{"allowOut": ["10.0.0.300"]}`,
		`{"allowOut": ["*"]}`,
		`{"allowOut": ["a.*.example.com"]}`,
		`{"denyOut": ["exa mple.com"]}`,
		`{"allowOut": ["1.2.3.4:0"]}`,
		`{"allowOut": ["example.com:65536"]}`,
		`{"denyOut": ["::1"]}`,
		`{"allowOut": [""]}`,
		`{"allowOut": "example.com"}`,
		`{"egressProxy": {"address": "no-port"}}`,
		`{"egressProxy": {"address": "proxy.test:0"}}`,
		`{"egressProxy": {"address": "proxy.test:1080", "password": "no user"}}`,
		`{"egressProxy": {"address": "proxy.test:1080", "extra": 1}}`,
		`{"egressProxy": "proxy.test:1080"}`,
		`{"rules": {"*": []}}`,
		`{"rules": []}`,
		`{"rules": {"example.com": [{"transform": {"headers": {"Host": "evil.test"}}}]}}`,
		`{"rules": {"example.com": [{"transform": {"headers": {"Bad Name": "x"}}}]}}`,
		`{"rules": {"example.com": [{"transform": {"headers": {"A": "${e2b.identity.tokens.aws}"}}}]}}`,
		`{"rules": {"example.com": [{"transform": {"headers": {"A": "${e2b.secrets.missing}"}}}]}}`,
		`{"allowOut": [` + strings.Repeat(`"1.1.1.1",`, 600) + `"1.1.1.1"]}`,
	}
	for _, b := range bad {
		for _, r := range []struct{ method, path, body string }{
			{"PUT", "/sandboxes/" + sb.ID + "/network", b},
			{"POST", "/v2/sandboxes", `{"templateID": "base", "network": ` + b + `}`},
		} {
			code, m := do(r.method, r.path, r.body)
			if code != 400 || m["code"] != float64(400) || m["message"] == "" {
				t.Errorf("%s %s %.60s: got %d %v, want 400 in E2B shape", r.method, r.path, r.body, code, m)
			}
		}
	}
	if code, m := do("PUT", "/sandboxes/"+sb.ID+"/network", `{"allowOut": [`); code != 400 {
		t.Errorf("malformed JSON: %d %v", code, m)
	}
	if code, m := do("PUT", "/sandboxes/aaaaaaaaaaaaaaaaaaaa/network", `{}`); code != 404 || m["code"] != float64(404) {
		t.Errorf("unknown sandbox: %d %v", code, m)
	}
	// Nothing was created by the refused creates.
	list, err := srv.Client.ListSandboxes(ctx, nil)
	if err != nil || len(list) != 1 {
		t.Fatalf("sandboxes after refused creates: %v %v", list, err)
	}
	// The good shapes pass.
	for _, b := range []string{`{}`, `{"allow_internet_access": false, "allowOut": ["10.1.0.0/16:5432", "1.2.3.4", "*.example.com", "example.org:443"]}`, `{"denyOut": ["0.0.0.0/0"], "egressProxy": null}`, `{"egressProxy": {"address": "proxy.test:1080", "username": "u", "password": "p"}, "rules": {"*.example.com": [{"transform": {"headers": {"X-A": "b"}}}]}}`} {
		if code, m := do("PUT", "/sandboxes/"+sb.ID+"/network", b); code != 204 {
			t.Errorf("PUT %s: %d %v", b, code, m)
		}
	}
}

// TestNetworkRestart: rules and policies survive a restart of sbx serve,
// and networks of sandboxes killed while it was down are removed.
func TestNetworkRestart(t *testing.T) {
	srv, ti := netServer(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	A, B := ti.A.String(), ti.B.String()
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Network: client.DenyAll(A, "*.b.test")})
	if err != nil {
		t.Fatal(err)
	}
	mustReach(t, ctx, sb, "http://"+A+"/")
	mustNotReach(t, ctx, sb, "http://"+B+"/")
	srv.Restart()
	sb, err = c.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustReach(t, ctx, sb, "http://"+A+"/")
	mustNotReach(t, ctx, sb, "http://"+B+"/")
	mustReach(t, ctx, sb, "http://www.b.test/") // the domain rule and the proxy are back
	mustNotReach(t, ctx, sb, "http://169.254.169.254/")
	info, err := c.GetSandbox(ctx, sb.ID)
	if err != nil || info.Network == nil || !slices.Equal(info.Network.AllowOut, []string{A, "*.b.test"}) {
		t.Fatalf("policy after restart: %+v %v", info, err)
	}
	// A sandbox whose box dies while the server is down loses its network
	// at the next start.
	srv.Stop()
	rt := harness.Runtime()
	run(t, "/usr/local/lib/sbx/"+rt, "--root", filepath.Join(srv.DataDir, rt), "kill", sb.ID, "KILL")
	deadline := time.Now().Add(10 * time.Second)
	for pidAlive(t, srv.DataDir, sb.ID) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // waiting for a process to die: no event to wait on from here
	}
	srv.StartAgain()
	assertNoNetworkLeft(t, srv)
}

func pidAlive(t *testing.T, dataDir, id string) bool {
	b, err := os.ReadFile(filepath.Join(dataDir, "sandboxes", id, "bundle", "init.pid"))
	if err != nil {
		return false
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || unix.Kill(pid, 0) != nil {
		return false
	}
	// An exited process not reaped yet (runsc's sandbox process, reparented
	// to the host's init) is not alive either.
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(st), ") Z ")
}

// netLeftovers lists what of server srv's networking exists: its
// interfaces, namespace files and mounts, per-sandbox nftables chains and
// set elements, and conntrack entries from its subnet.
func netLeftovers(t *testing.T, srv *harness.Server) []string {
	t.Helper()
	var left []string
	prefix := network.Prefix(srv.DataDir)
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			left = append(left, "link "+l.Attrs().Name)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(srv.DataDir, "network", "ns"))
	for _, e := range ents {
		left = append(left, "netns file "+e.Name())
	}
	ents, _ = os.ReadDir(filepath.Join(srv.DataDir, "network", "boxes"))
	for _, e := range ents {
		left = append(left, "state "+e.Name())
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], filepath.Join(srv.DataDir, "network", "ns")+"/") {
			left = append(left, "mount "+f[4])
		}
	}
	cc, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: network.TableName(srv.DataDir)}
	chains, err := cc.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		if ch.Table.Name == tbl.Name && strings.HasPrefix(ch.Name, "sb") {
			left = append(left, "chain "+ch.Name)
		}
	}
	if sets, err := cc.GetSets(tbl); err == nil {
		for _, s := range sets {
			if s.Name == "boxes" || s.Name == "proxied" {
				els, err := cc.GetSetElements(s)
				if err != nil {
					t.Fatal(err)
				}
				if len(els) > 0 {
					left = append(left, fmt.Sprintf("set %s: %d elements", s.Name, len(els)))
				}
				continue
			}
			left = append(left, "set "+s.Name)
		}
	}
	subnet := netip.MustParsePrefix(srv.Subnet)
	flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		if a, ok := netip.AddrFromSlice(f.Forward.SrcIP); ok && subnet.Contains(a.Unmap()) {
			left = append(left, "conntrack "+f.String())
		}
	}
	return left
}

func assertNoNetworkLeft(t *testing.T, srv *harness.Server) {
	t.Helper()
	if left := netLeftovers(t, srv); len(left) > 0 {
		t.Fatalf("left behind (%d):\n%s", len(left), strings.Join(left[:min(len(left), 30)], "\n"))
	}
}

// stableFDs is serverFDs once it holds still for a moment: the server keeps
// a few network namespaces ready and refills them in the background after
// each create, holding a file or two more while it does.
func stableFDs(t *testing.T, srv *harness.Server) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := serverFDs(t, srv)
		time.Sleep(300 * time.Millisecond) // no event tells when a background refill is done
		b := serverFDs(t, srv)
		if a == b || time.Now().After(deadline) {
			return b
		}
	}
}

// serverFDs counts the server's open file descriptors, leaving out the
// API connections clients hold open (keep-alive), whose number depends on
// the client, not on leaks.
func serverFDs(t *testing.T, srv *harness.Server) int {
	t.Helper()
	pid := srv.Pid()
	_, apiPort, _ := strings.Cut(srv.Addr, ":")
	port, _ := strconv.Atoi(apiPort)
	api := map[string]bool{} // socket inodes of accepted API connections
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		_, lp, _ := strings.Cut(f[1], ":")
		p, _ := strconv.ParseInt(lp, 16, 32)
		if int(p) == port && f[3] != "0A" { // not the listener itself
			api["socket:["+f[9]+"]"] = true
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && api[l] {
			continue
		}
		n++
	}
	return n
}

// TestNetworkLeaks creates and kills sandboxes many times (1000 by default,
// SBX_NET_CYCLES to change) with policies that use every part of the
// network layer and traffic in some of them, and checks that nothing
// accumulates: interfaces, namespaces, nftables chains/sets/elements,
// conntrack entries, the server's file descriptors.
func TestNetworkLeaks(t *testing.T) {
	cycles := 1000
	if v := os.Getenv("SBX_NET_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SBX_NET_CYCLES=%q", v)
		}
		cycles = n
	}
	srv, ti := netServer(t)
	ctx := ctxFor(t, 30*time.Minute)
	c := srv.Client
	cycle := func(i int) error {
		opts := client.CreateOptions{}
		switch i % 3 {
		case 1:
			opts.Network = client.DenyAll(ti.A.String())
		case 2:
			opts.Network = &client.NetworkPolicy{AllowOut: []string{"*.a.test"}, DenyOut: []string{"0.0.0.0/0"}}
		}
		sb, err := c.CreateSandbox(ctx, opts)
		if err != nil {
			return fmt.Errorf("cycle %d: create: %w", i, err)
		}
		if i%10 == 0 {
			url := "http://" + ti.A.String() + "/"
			if i%3 == 2 {
				url = "http://www.a.test/" // through DNS and the proxy
			}
			// -m 10: a loaded CI host (load 14) once took over 3 s to resolve.
			res, err := sb.Run(ctx, "curl -sS -m 10 "+url+" 2>&1", nil)
			if err != nil || !strings.Contains(res.Stdout, "INTERNET-OK") {
				return fmt.Errorf("cycle %d: curl: %v %+v", i, err, res)
			}
		}
		if err := sb.Kill(ctx); err != nil {
			return fmt.Errorf("cycle %d: kill: %w", i, err)
		}
		return nil
	}
	for i := 0; i < 5; i++ { // warm up: lazily opened files, pools
		if err := cycle(i); err != nil {
			t.Fatal(err)
		}
	}
	fds := stableFDs(t, srv)
	start := time.Now()
	const par = 4
	errc := make(chan error, cycles)
	sem := make(chan struct{}, par)
	for i := 0; i < cycles; i++ {
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem }()
			errc <- cycle(i)
		}(i)
	}
	for i := 0; i < cycles; i++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	d := time.Since(start)
	t.Logf("%d create/kill cycles (%d at a time) in %v (%v per cycle)", cycles, par, d.Round(time.Millisecond), (d / time.Duration(cycles)).Round(time.Millisecond))
	assertNoNetworkLeft(t, srv)
	if now := stableFDs(t, srv); now > fds {
		t.Fatalf("server file descriptors: %d before, %d after %d cycles", fds, now, cycles)
	}
	// Shut down with no sandbox: the table goes too.
	srv.Stop()
	cc, _ := nftables.New()
	ts, err := cc.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range ts {
		if tb.Name == network.TableName(srv.DataDir) {
			t.Fatal("nftables table left after the last sandbox and the server are gone")
		}
	}
}

// TestNetworkCLI drives egress policy with the sbx CLI: create with a
// policy, show it, change it, and bad entries.
func TestNetworkCLI(t *testing.T) {
	srv, ti := netServer(t)
	ctx := ctxFor(t, 3*time.Minute)
	A, B := ti.A.String(), ti.B.String()
	out, errOut, code := srv.CLI(ctx, nil, "create", "--deny-all", "--allow", A)
	if code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	sb, err := srv.Client.ConnectSandbox(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustReach(t, ctx, sb, "http://"+A+"/")
	mustNotReach(t, ctx, sb, "http://"+B+"/")
	out, _, code = srv.CLI(ctx, nil, "network", "show", id)
	if code != 0 || !strings.Contains(out, "internet: denied") || !strings.Contains(out, "allow:    "+A) {
		t.Fatalf("show: %d %q", code, out)
	}
	if _, errOut, code := srv.CLI(ctx, nil, "network", "set", id, "--deny-all", "--allow", B+",*.a.test"); code != 0 {
		t.Fatalf("set: %d %s", code, errOut)
	}
	mustReach(t, ctx, sb, "http://"+B+"/")
	mustReach(t, ctx, sb, "http://www.a.test/")
	mustNotReach(t, ctx, sb, "http://"+A+"/")
	out, _, code = srv.CLI(ctx, nil, "network", "show", "--json", id)
	var p client.NetworkPolicy
	if err := json.Unmarshal([]byte(out), &p); code != 0 || err != nil || !slices.Equal(p.AllowOut, []string{B, "*.a.test"}) || p.AllowInternetAccess == nil || *p.AllowInternetAccess {
		t.Fatalf("show --json: %d %q %v", code, out, err)
	}
	// No flags: everything the server allows.
	if _, errOut, code := srv.CLI(ctx, nil, "network", "set", id); code != 0 {
		t.Fatalf("set: %d %s", code, errOut)
	}
	mustReach(t, ctx, sb, "http://"+A+"/")
	for _, bad := range []string{"*", "10.0.0.0/40", "example.com:0"} {
		_, errOut, code := srv.CLI(ctx, nil, "network", "set", id, "--allow", bad)
		if code != 1 || !strings.Contains(errOut, "invalid") && !strings.Contains(errOut, bad) {
			t.Errorf("set --allow %s: %d %q", bad, code, errOut)
		}
	}
	if _, _, code := srv.CLI(ctx, nil, "network", "set", id, "--deny-all", "--allow-all"); code != 2 {
		t.Errorf("--deny-all --allow-all: exit %d, want 2", code)
	}
}

// TestE2BJavaScriptNetwork runs tests/e2b-js/network.spec.js: egress
// policies through the unmodified e2b npm package, against a test internet.
func TestE2BJavaScriptNetwork(t *testing.T) {
	dir := filepath.Join(harness.RepoRoot(), "tests", "e2b-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		t.Fatal("the e2b npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	srv, ti := netServer(t)
	cmd := osexec.Command("node", "--test", "--test-reporter=spec", "--test-force-exit", "network.spec.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey, "SBX_TEST_A="+ti.A.String(), "SBX_TEST_B="+ti.B.String())
	out, err := cmd.CombinedOutput()
	t.Logf("node output:\n%s", out)
	if err != nil {
		t.Fatalf("e2b JavaScript network suite failed: %v", err)
	}
}

// TestNetworkRunsc: a gVisor sandbox's netstack takes over the same
// prepared namespace, and the same rules hold for it.
func TestNetworkRunsc(t *testing.T) {
	srv, ti := netServer(t)
	ctx := ctxFor(t, 3*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{Runtime: "runsc"})
	if err != nil {
		t.Fatal(err)
	}
	A := ti.A.String()
	mustReach(t, ctx, sb, "http://www.a.test/")
	mustNotReach(t, ctx, sb, "http://169.254.169.254/")
	addr := sandboxAddr(t, ctx, sb)
	hl := newHostListener(t)
	mustNotReach(t, ctx, sb, fmt.Sprintf("http://%s:%d/", gateway(addr), hl.Port))
	if err := sb.UpdateNetwork(ctx, client.NetworkPolicy{AllowOut: []string{"*.b.test"}, DenyOut: []string{"0.0.0.0/0"}}); err != nil {
		t.Fatal(err)
	}
	mustReach(t, ctx, sb, "http://www.b.test/")
	mustNotReach(t, ctx, sb, "http://"+A+"/")
	mustNotReach(t, ctx, sb, "-H 'Host: www.b.test' http://"+A+"/")
	if acc := hl.Accepted(); len(acc) > 0 {
		t.Fatalf("host service reached from %v", acc)
	}
}

// TestNetworkHostRestart: after a host restart (boxes, mounts, interfaces
// and nftables rules gone; only files left) a persistent sandbox starts
// again with a network of its own and the policy it had.
func TestNetworkHostRestart(t *testing.T) {
	srv, ti := netServer(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	A, B := ti.A.String(), ti.B.String()
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute, Lifecycle: client.Lifecycle{Persistent: true}, Network: client.DenyAll(A)})
	if err != nil {
		t.Fatal(err)
	}
	mustReach(t, ctx, sb, "http://"+A+"/")
	srv.Stop()
	// What a reboot does, the network included.
	boxCmd(t, srv, "delete", "--force", sb.ID)
	dir := filepath.Join(srv.DataDir, "sandboxes", sb.ID)
	for _, m := range []string{"rootfs", "disk"} {
		if out, err := osexec.Command("umount", "-l", filepath.Join(dir, m)).CombinedOutput(); err != nil {
			t.Fatalf("unmount %s: %v: %s", m, err, out)
		}
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, network.Prefix(srv.DataDir)) {
			netlink.LinkDel(l)
		}
	}
	ns := filepath.Join(srv.DataDir, "network", "ns", sb.ID)
	for _, p := range []string{ns, ns + ".user"} {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			t.Fatalf("unmount %s: %v", p, err)
		}
	}
	cc, _ := nftables.New()
	cc.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: network.TableName(srv.DataDir)})
	if err := cc.Flush(); err != nil {
		t.Fatal(err)
	}
	srv.StartAgain()

	info, err := c.GetSandbox(ctx, sb.ID)
	if err != nil || info.State != "paused" {
		t.Fatalf("after the host restart: %+v %v", info, err)
	}
	if info.Network == nil || !slices.Equal(info.Network.AllowOut, []string{A}) {
		t.Fatalf("policy while paused: %+v", info.Network)
	}
	sb, err = c.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustReach(t, ctx, sb, "http://"+A+"/")
	mustNotReach(t, ctx, sb, "http://"+B+"/")
	mustNotReach(t, ctx, sb, "http://169.254.169.254/")
	if err := sb.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoNetworkLeft(t, srv)
}
