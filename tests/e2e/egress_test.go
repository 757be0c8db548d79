package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// headerLog records the Authorization and X-Key headers each request of
// the test's upstreams carried.
type headerLog struct {
	mu   sync.Mutex
	seen []string
}

func (h *headerLog) handler(tag string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.seen = append(h.seen, fmt.Sprintf("%s host=%s auth=%s xkey=%s", tag, r.Host, r.Header.Get("Authorization"), r.Header.Get("X-Key")))
		h.mu.Unlock()
		fmt.Fprintf(w, "UPSTREAM-OK %s\n", tag)
		if r.URL.Path == "/echo" {
			// For the e2b-js suite, which sees only what the sandbox
			// does (the value then passes through the sandbox).
			fmt.Fprintf(w, "auth=%s\n", r.Header.Get("Authorization"))
		}
	})
}

func (h *headerLog) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.seen
	h.seen = nil
	return out
}

// egressUpstreams starts, in the test internet's namespace, HTTPS on 8443
// with a certificate of ca (trusted through --egress-ca-file), HTTPS on
// 9443 with a self-signed one (trusted by nobody) and HTTP on 8080.
func egressUpstreams(t *testing.T, ti *testInternet, ca *harness.CA) *headerLog {
	t.Helper()
	var trusted, untrusted, plain net.Listener
	inNS(t, "/run/netns/"+ti.NS, func() error {
		var err error
		if trusted, err = net.Listen("tcp4", ":8443"); err != nil {
			return err
		}
		if untrusted, err = net.Listen("tcp4", ":9443"); err != nil {
			return err
		}
		plain, err = net.Listen("tcp4", ":8080")
		return err
	})
	log := &headerLog{}
	s1 := &http.Server{Handler: log.handler("trusted")}
	s2 := &http.Server{Handler: log.handler("untrusted"), TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}}
	s3 := &http.Server{Handler: log.handler("plain")}
	go s1.ServeTLS(trusted, ca.CertFile, ca.KeyFile)
	go s2.ServeTLS(untrusted, "", "")
	go s3.Serve(plain)
	t.Cleanup(func() { s1.Close(); s2.Close(); s3.Close() })
	return log
}

// TestEgressSecrets: a sandbox whose network rules set a header with a
// secret placeholder sends the placeholder, and the upstream receives the
// secret, over HTTPS (intercepted with the sandbox's CA, the upstream
// verified against --egress-ca-file) and HTTP. An upstream nobody trusts
// gets nothing; a denied host stays denied; removing the rules live ends
// the filling in; the value is nowhere in the sandbox.
func TestEgressSecrets(t *testing.T) {
	ca := harness.NewCA(t, "api.test", "x.b.test")
	srv, ti := netServer(t, "--egress-ca-file", ca.CAFile)
	ctx := ctxFor(t, 4*time.Minute)
	log := egressUpstreams(t, ti, ca)
	c := srv.Client
	const value = "sk-live-7f3a91c2e4b8d650"
	if _, err := c.CreateSecret(ctx, "api-token", value, nil); err != nil {
		t.Fatal(err)
	}
	ph := client.SecretPlaceholder("api-token")
	rule := func(h string) []client.NetworkRule {
		return []client.NetworkRule{{Transform: &client.NetworkTransform{Headers: map[string]string{h: "Bearer " + ph}}}}
	}
	pol := client.NetworkPolicy{
		DenyOut: []string{ti.B.String()}, // *.b.test
		Rules: map[string][]client.NetworkRule{
			"api.test":       rule("Authorization"),
			"untrusted.test": rule("Authorization"),
			"plain.test":     rule("X-Key"),
			"*.b.test":       rule("Authorization"),
		},
	}
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Network: &pol})
	if err != nil {
		t.Fatal(err)
	}

	// HTTPS: the sandbox trusts its CA through the system bundle (curl
	// without -k), sends the placeholder; the upstream receives the value.
	res := mustRun(t, ctx, sb, `curl -sS -m 5 -H 'Authorization: Bearer `+ph+`' https://api.test:8443/ 2>&1; echo " exit=$?"`, nil)
	if !strings.Contains(res.Stdout, "UPSTREAM-OK trusted") || !strings.Contains(res.Stdout, "exit=0") {
		t.Fatalf("HTTPS through the egress proxy: %q", res.Stdout)
	}
	if got := log.take(); len(got) != 1 || got[0] != "trusted host=api.test:8443 auth=Bearer "+value+" xkey=" {
		t.Fatalf("the upstream saw %q; want the secret in Authorization", got)
	}
	// Node and Python find the CA through the variables.
	res = mustRun(t, ctx, sb, `node -e 'require("https").get("https://api.test:8443/", r => { let b=""; r.on("data", d => b += d); r.on("end", () => console.log(r.statusCode, b.trim())) }).on("error", e => console.log("ERR", e.message))'`, nil)
	if !strings.Contains(res.Stdout, "200 UPSTREAM-OK trusted") {
		t.Fatalf("node through the egress proxy: %q %q", res.Stdout, res.Stderr)
	}
	if got := log.take(); len(got) != 1 || !strings.Contains(got[0], "auth=Bearer "+value) {
		t.Fatalf("the upstream saw %q from node", got)
	}

	// HTTP.
	res = mustRun(t, ctx, sb, `curl -sS -m 5 http://plain.test:8080/ 2>&1; echo " exit=$?"`, nil)
	if !strings.Contains(res.Stdout, "UPSTREAM-OK plain") {
		t.Fatalf("HTTP through the egress proxy: %q", res.Stdout)
	}
	if got := log.take(); len(got) != 1 || got[0] != "plain host=plain.test:8080 auth= xkey=Bearer "+value {
		t.Fatalf("the plain upstream saw %q", got)
	}

	// An upstream whose certificate the host does not trust gets nothing.
	res = mustRun(t, ctx, sb, `curl -sS -m 5 https://untrusted.test:9443/ 2>&1; echo " exit=$?"`, nil)
	if strings.Contains(res.Stdout, "UPSTREAM-OK") || !strings.Contains(res.Stdout, "TLS to untrusted.test failed") {
		t.Fatalf("untrusted upstream: %q; want the proxy's 502", res.Stdout)
	}
	if got := log.take(); len(got) != 0 {
		t.Fatalf("the untrusted upstream was sent %q", got)
	}

	// A denied host stays denied, rule or not.
	mustNotReach(t, ctx, sb, "https://x.b.test:8443/")
	if got := log.take(); len(got) != 0 {
		t.Fatalf("a denied upstream was sent %q", got)
	}

	// The value is nowhere in the sandbox: files, environments, memory.
	// Memory is scanned from the host, every process in the sandbox's
	// network namespace (under runsc: the Sentry, which holds the guest's
	// memory), so the scan does not depend on what the guest's /proc
	// allows.
	rev := reverse(value)
	if hits := scanSandboxMemory(t, srv, sb.ID, value); len(hits) > 0 {
		t.Fatalf("the secret's value is in the sandbox's memory: %v", hits)
	}
	res = mustRun(t, ctx, sb, `v=$(echo `+rev+` | rev); grep -rl --exclude-dir=proc --exclude-dir=sys -e "$v" / 2>/dev/null | head; cat /proc/*/environ 2>/dev/null | tr '\0' '\n' | grep -c -e "$v"; echo done`, nil)
	if strings.TrimSpace(res.Stdout) != "0\ndone" {
		t.Fatalf("grep for the value in the sandbox: %q", res.Stdout)
	}
	res = mustRun(t, ctx, sb, `echo "$NODE_EXTRA_CA_CERTS $SSL_CERT_FILE"; grep -c "PRIVATE KEY" /etc/ssl/certs/sbx-egress-ca.pem; grep -c BEGIN /etc/ssl/certs/sbx-egress-ca.pem`, nil)
	if res.Stdout != "/etc/ssl/certs/sbx-egress-ca.pem /etc/ssl/certs/ca-certificates.crt\n0\n1\n" {
		t.Fatalf("the sandbox's CA: %q; want the variables set, one certificate and no key", res.Stdout)
	}

	// The scans find the value when it is there: a process and a file
	// of the test's own that hold it.
	mustRun(t, ctx, sb, `nohup python3 -c "import time; v='`+rev+`'[::-1]; time.sleep(60)" >/dev/null 2>&1 &
echo `+rev+` | rev >/tmp/planted; sleep 0.5`, nil)
	if hits := scanSandboxMemory(t, srv, sb.ID, value); len(hits) == 0 {
		t.Fatal("the memory scan found nothing with the value planted in a process of the sandbox")
	}
	res = mustRun(t, ctx, sb, `v=$(echo `+rev+` | rev); grep -rl --exclude-dir=proc --exclude-dir=sys -e "$v" /tmp; pkill -f time.sleep; rm /tmp/planted`, nil)
	if strings.TrimSpace(res.Stdout) != "/tmp/planted" {
		t.Fatalf("grep with the value planted: %q", res.Stdout)
	}

	// Live update: without rules the placeholder goes out as written.
	if err := sb.UpdateNetwork(ctx, client.NetworkPolicy{DenyOut: []string{ti.B.String()}}); err != nil {
		t.Fatal(err)
	}
	res = mustRun(t, ctx, sb, `curl -sS -m 5 -H 'X-Key: `+ph+`' http://plain.test:8080/ 2>&1; echo " exit=$?"`, nil)
	if got := log.take(); !strings.Contains(res.Stdout, "UPSTREAM-OK plain") || len(got) != 1 || got[0] != "plain host=plain.test:8080 auth= xkey="+ph {
		t.Fatalf("after the rules were removed: %q, upstream saw %q; want the placeholder as sent", res.Stdout, got)
	}
	// And back.
	if err := sb.UpdateNetwork(ctx, pol); err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, sb, `curl -sS -m 5 http://plain.test:8080/`, nil)
	if got := log.take(); len(got) != 1 || !strings.Contains(got[0], "xkey=Bearer "+value) {
		t.Fatalf("after the rules came back, the upstream saw %q", got)
	}
	// The details show the rules.
	info, err := c.GetSandbox(ctx, sb.ID)
	if err != nil || info.Network == nil {
		t.Fatalf("details: %+v %v", info, err)
	}
}

// scanSandboxMemory returns "pid start-end" for every readable mapping
// of a process in sandbox id's network namespace that holds value.
func scanSandboxMemory(t *testing.T, srv *harness.Server, id, value string) []string {
	t.Helper()
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(srv.DataDir, "network", "ns", id), &want); err != nil {
		t.Fatalf("the sandbox's network namespace: %v", err)
	}
	ents, _ := os.ReadDir("/proc")
	needle := []byte(value)
	var hits []string
	procs := 0
	seen := map[uint64]bool{}
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+pid+"/ns/net", &st) != nil || st.Ino != want.Ino || st.Dev != want.Dev {
			continue
		}
		maps, err := os.ReadFile("/proc/" + pid + "/maps")
		if err != nil {
			continue
		}
		mem, err := os.Open("/proc/" + pid + "/mem")
		if err != nil {
			continue
		}
		procs++
		buf := make([]byte, 4<<20)
		for _, line := range strings.Split(string(maps), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[1][0] != 'r' || len(f) >= 6 && strings.Contains(f[5], "memfd:") {
				// Shared memory files are read below, as files: faulting
				// in their holes through mem would allocate them (and
				// the sandbox's cgroup runs out of memory).
				continue
			}
			var lo, hi uint64
			if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err != nil {
				continue
			}
			for off := lo; off < hi; {
				n := min(uint64(len(buf)), hi-off)
				got, _ := mem.ReadAt(buf[:n], int64(off))
				if got > 0 && bytes.Contains(buf[:got], needle) {
					hits = append(hits, fmt.Sprintf("%s %s", pid, f[0]))
					break
				}
				if got <= 0 {
					break
				}
				// Overlap so a value across two reads is seen.
				off += uint64(got)
				if off < hi && got > len(needle) {
					off -= uint64(len(needle))
				}
			}
		}
		mem.Close()
		fds, _ := os.ReadDir("/proc/" + pid + "/fd")
		for _, fd := range fds {
			path := "/proc/" + pid + "/fd/" + fd.Name()
			if l, err := os.Readlink(path); err != nil || !strings.Contains(l, "memfd:") {
				continue
			}
			if hit := scanFileData(path, needle, seen); hit != "" {
				hits = append(hits, pid+" "+hit)
			}
		}
	}
	if procs == 0 {
		t.Fatal("no process found in the sandbox's network namespace to scan")
	}
	return hits
}

// scanFileData reports the file at path ("" if not) holding needle in its
// data, reading only the extents that hold data (SEEK_DATA), once per
// inode.
func scanFileData(path string, needle []byte, seen map[uint64]bool) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || seen[st.Ino] {
		return ""
	}
	seen[st.Ino] = true
	buf := make([]byte, 4<<20)
	fd := int(f.Fd())
	for off := int64(0); off < st.Size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			break
		}
		for o := data; o < hole; {
			n := min(int64(len(buf)), hole-o)
			got, _ := f.ReadAt(buf[:n], o)
			if got <= 0 {
				break
			}
			if bytes.Contains(buf[:got], needle) {
				return fmt.Sprintf("%s@%d", path, o)
			}
			o += int64(got)
			if o < hole && got > len(needle) {
				o -= int64(len(needle))
			}
		}
		off = hole
	}
	return ""
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// TestEgressSecretRefs: a policy naming a secret the team does not have
// (none of that name, or another team's) is refused with 400, as is a
// workload-identity placeholder.
func TestEgressSecretRefs(t *testing.T) {
	srv, _ := netServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	if _, stderr, code := srv.CLI(ctx, nil, "team", "create", "other"); code != 0 {
		t.Fatalf("team create: %s", stderr)
	}
	out, stderr, code := srv.CLI(ctx, nil, "key", "create", "--team", "other", "--name", "other")
	if code != 0 {
		t.Fatalf("key create: %s", stderr)
	}
	other := client.New(srv.URL, strings.TrimSpace(out))
	if _, err := other.CreateSecret(ctx, "theirs", "their-value", nil); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{client.SecretPlaceholder("theirs"), client.SecretPlaceholder("nope"), "${e2b.identity.tokens.aws}"} {
		pol := client.NetworkPolicy{Rules: map[string][]client.NetworkRule{"api.test": {{Transform: &client.NetworkTransform{Headers: map[string]string{"Authorization": v}}}}}}
		_, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{Network: &pol})
		if !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("create with a rule of %s: %v; want 400", v, err)
		}
	}
	if list, err := srv.Client.ListSandboxes(ctx, nil); err != nil || len(list) != 0 {
		t.Fatalf("sandboxes after refused creates: %v %v", list, err)
	}
}

const socksPassword = "socks-pw-91be"

// socks5Server is a tiny SOCKS5 server that takes user "u" with
// socksPassword only, in the test internet's namespace; it records each
// CONNECT target.
func socks5Server(t *testing.T, ti *testInternet) (string, func() []string) {
	t.Helper()
	var ln net.Listener
	inNS(t, "/run/netns/"+ti.NS, func() error {
		var err error
		ln, err = net.Listen("tcp4", ti.A.String()+":1080")
		return err
	})
	var mu sync.Mutex
	var targets []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var b [262]byte
				if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 5 {
					return
				}
				io.ReadFull(c, b[:b[1]])
				if !bytes.Contains(b[:b[1]], []byte{2}) {
					c.Write([]byte{5, 0xff}) // credentials required
					return
				}
				c.Write([]byte{5, 2})
				// RFC 1929: ver, ulen, user, plen, pass.
				io.ReadFull(c, b[:2])
				user := make([]byte, b[1])
				io.ReadFull(c, user)
				io.ReadFull(c, b[:1])
				pass := make([]byte, b[0])
				io.ReadFull(c, pass)
				if string(user) != "u" || string(pass) != socksPassword {
					c.Write([]byte{1, 1})
					return
				}
				c.Write([]byte{1, 0})
				if _, err := io.ReadFull(c, b[:4]); err != nil || b[1] != 1 {
					return
				}
				var host string
				switch b[3] {
				case 1:
					io.ReadFull(c, b[:4])
					host = net.IP(b[:4]).String()
				case 3:
					io.ReadFull(c, b[:1])
					n := int(b[0])
					io.ReadFull(c, b[:n])
					host = string(b[:n])
				default:
					return
				}
				io.ReadFull(c, b[:2])
				target := net.JoinHostPort(host, fmt.Sprint(binary.BigEndian.Uint16(b[:2])))
				mu.Lock()
				targets = append(targets, target)
				mu.Unlock()
				up, err := net.Dial("tcp4", target)
				if err != nil {
					c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
					return
				}
				defer up.Close()
				c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := targets
		targets = nil
		return out
	}
}

// TestEgressSOCKS5: with egressProxy set, a sandbox's allowed TCP leaves
// through the user's SOCKS5 proxy; denied traffic never reaches it.
func TestEgressSOCKS5(t *testing.T) {
	srv, ti := netServer(t)
	ctx := ctxFor(t, 3*time.Minute)
	addr, targets := socks5Server(t, ti)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{Network: &client.NetworkPolicy{
		DenyOut:     []string{ti.B.String()},
		EgressProxy: &client.EgressProxy{Address: addr, Username: "u", Password: socksPassword},
	}})
	if err != nil {
		t.Fatal(err)
	}
	mustReach(t, ctx, sb, "http://a.test/")
	if got := targets(); len(got) != 1 || got[0] != ti.A.String()+":80" {
		t.Fatalf("the SOCKS5 proxy saw %q; want one CONNECT to %s:80", got, ti.A)
	}
	mustNotReach(t, ctx, sb, "http://x.b.test/")
	if got := targets(); len(got) != 0 {
		t.Fatalf("denied traffic reached the SOCKS5 proxy: %q", got)
	}
	// The details name the proxy and user, never the password.
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/sandboxes/"+sb.ID, nil)
	req.Header.Set("X-API-Key", srv.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"egressProxy":{"address":"`+addr+`","username":"u"}`) || strings.Contains(string(body), socksPassword) {
		t.Fatalf("details: %s; want the proxy's address and user without the password", body)
	}
	// Wrong credentials: egress fails closed, nothing goes out directly.
	if err := sb.UpdateNetwork(ctx, client.NetworkPolicy{EgressProxy: &client.EgressProxy{Address: addr, Username: "u", Password: "wrong"}}); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, ctx, sb, "http://a.test/")
	if got := targets(); len(got) != 0 {
		t.Fatalf("a connection with the wrong credentials was let through: %q", got)
	}
	// A proxy that is not there: egress fails closed.
	if err := sb.UpdateNetwork(ctx, client.NetworkPolicy{EgressProxy: &client.EgressProxy{Address: ti.A.String() + ":1081"}}); err != nil {
		t.Fatal(err)
	}
	mustNotReach(t, ctx, sb, "http://a.test/")
}

// TestE2BJavaScriptEgress runs tests/e2b-js/egress.spec.js: network rules
// with Secret.fill and with iam tokens in transform callbacks through the
// unmodified e2b npm package, against HTTPS upstreams in a test internet.
func TestE2BJavaScriptEgress(t *testing.T) {
	dir := filepath.Join(harness.RepoRoot(), "tests", "e2b-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		t.Fatal("the e2b npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	ca := harness.NewCA(t, "api.test")
	srv, ti := netServer(t, "--egress-ca-file", ca.CAFile)
	egressUpstreams(t, ti, ca)
	cmd := osexec.Command("node", "--test", "--test-reporter=spec", "--test-force-exit", "egress.spec.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SBX_URL="+srv.URL, "SBX_API_KEY="+srv.APIKey)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("egress.spec.js: %v", err)
	}
}

// TestEgressRestart: a sandbox's rules and its CA survive a restart of
// sbx serve: the sandbox keeps trusting the certificates it is shown, and
// the secret is still filled in; a fork of it gets the same.
func TestEgressRestart(t *testing.T) {
	ca := harness.NewCA(t, "api.test")
	srv, ti := netServer(t, "--egress-ca-file", ca.CAFile)
	ctx := ctxFor(t, 3*time.Minute)
	log := egressUpstreams(t, ti, ca)
	const value = "restart-secret-5c1e"
	if _, err := srv.Client.CreateSecret(ctx, "tok", value, nil); err != nil {
		t.Fatal(err)
	}
	pol := client.NetworkPolicy{Rules: map[string][]client.NetworkRule{
		"api.test": {{Transform: &client.NetworkTransform{Headers: map[string]string{"Authorization": client.SecretPlaceholder("tok")}}}},
	}}
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{Network: &pol})
	if err != nil {
		t.Fatal(err)
	}
	get := func(when string) {
		t.Helper()
		res := mustRun(t, ctx, sb, `curl -sS -m 5 https://api.test:8443/ 2>&1; echo " exit=$?"`, nil)
		if got := log.take(); !strings.Contains(res.Stdout, "UPSTREAM-OK trusted") || len(got) != 1 || !strings.Contains(got[0], "auth="+value) {
			t.Fatalf("%s: %q, the upstream saw %q", when, res.Stdout, got)
		}
	}
	get("before the restart")
	// The rule's name sent to an address it does not resolve to (the
	// sandbox's own choice of server): no secret, the request goes on as
	// written.
	res := mustRun(t, ctx, sb, `curl -sS -k -m 5 --resolve api.test:8443:`+ti.B.String()+` https://api.test:8443/ 2>&1; echo " exit=$?"`, nil)
	if got := log.take(); !strings.Contains(res.Stdout, "UPSTREAM-OK trusted") || len(got) != 1 || got[0] != "trusted host=api.test:8443 auth= xkey=" {
		t.Fatalf("api.test at another address: %q, the upstream saw %q; want the request without the secret", res.Stdout, got)
	}
	srv.Restart()
	get("after the restart")

	// A fork has the rules, and a CA of its own in its trust store.
	forks, err := sb.Fork(ctx, 1, time.Minute)
	if err != nil || len(forks) != 1 || forks[0].Err != nil {
		t.Fatalf("fork: %v %+v", err, forks)
	}
	sb = forks[0].Sandbox
	get("in the fork")
}
