package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestEscape tries, from inside a sandbox and mostly as the sandbox's root,
// what an attacker would: reach the host's files, kernel, processes and
// network, other sandboxes, and exhaust the host. Every attempt must fail and
// the server must keep serving.
func TestEscape(t *testing.T) {
	// The metrics listener on every host address, as an operator might
	// bind it for a scraper elsewhere: sandboxes must still not reach it.
	srv := harness.Start(t, "--pids", "256", "--memory-mb", "256", "--disk-mb", "128", "--metrics-listen", "0.0.0.0:0")
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	neighbour, err := c.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// A secret on the host and a service on the host's loopback.
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "secret")
	if err := os.WriteFile(secret, []byte("host-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	hostPort := ln.Addr().(*net.TCPAddr).Port
	_, apiPort, _ := net.SplitHostPort(srv.Addr)
	_, metricsPort, _ := net.SplitHostPort(metricsAddr(t, srv))
	metricsTargets := []string{"127.0.0.1:" + metricsPort}
	for _, a := range hostAddrs(t) {
		metricsTargets = append(metricsTargets, net.JoinHostPort(a.String(), metricsPort))
	}

	// The neighbour serves on all its addresses.
	if _, err := neighbour.Start(ctx, client.ExecOptions{Cmd: "python3", Args: []string{"-m", "http.server", "8000"}}); err != nil {
		t.Fatal(err)
	}

	// Each sandbox has its own network: the neighbour's address and the
	// gateway (the host side of this sandbox's link, where only sbx's DNS
	// forwarder answers).
	nbAddr := sandboxAddr(t, ctx, neighbour)
	gw := gateway(sandboxAddr(t, ctx, sb))

	root := &client.RunOptions{User: "root"}
	attempts := []struct {
		name string
		cmd  string
		// ok is a string the output must contain, proving the attempt
		// was made and failed the right way.
		ok string
		// runsc, when set, replaces ok under gVisor, where the box talks
		// to the Sentry's kernel instead of the host's; each says why.
		runsc string
	}{
		{"host file not visible", fmt.Sprintf(`cat %s 2>&1; ls %s 2>&1; echo done`, secret, secretDir), "No such file", ""},
		{"write to host path stays inside", fmt.Sprintf(`mkdir -p %s && echo pwned > %s/pwned && echo written`, secretDir, secretDir), "written", ""},
		{"mount", `mount -t tmpfs none /mnt 2>&1; mount --bind / /mnt 2>&1; echo rc=$?`, "rc=32", ""},
		{"kernel module", `python3 -c 'import ctypes,os; l=ctypes.CDLL(None,use_errno=True); r=l.init_module(0,0,b""); print("rc",r,os.strerror(ctypes.get_errno()))'`, "rc -1 Operation not permitted", ""},
		// gVisor's /proc/sys is the Sentry's own; it refuses the host-wide
		// knob outright (the hostname is the box's UTS name under both).
		{"write /proc/sys", `echo 1 > /proc/sys/kernel/sysrq 2>&1; echo x > /proc/sys/kernel/hostname 2>&1; echo done`, "Read-only file system", "sysrq: Operation not permitted"},
		// gVisor's sysfs has no host kernel knobs at all.
		{"write /sys", `echo 1 > /sys/kernel/mm/ksm/run 2>&1; echo done`, "Read-only file system", "ksm/run: No such file or directory"},
		{"raw socket", `python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)' 2>&1`, "PermissionError", ""},
		{"packet socket", `python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)' 2>&1`, "PermissionError", ""},
		{"host processes invisible", fmt.Sprintf(`kill -0 %d 2>&1; ls /proc | grep -c '^[0-9]'`, os.Getpid()), "No such process", ""},
		// PTRACE_ATTACH (16) to the agent, then PTRACE_DETACH (17) should
		// it ever succeed, so a failure does not leave the agent stopped.
		{"ptrace of the agent", `python3 -c 'import ctypes,os; l=ctypes.CDLL(None,use_errno=True); r=l.ptrace(16,1,0,0); e=ctypes.get_errno(); r==0 and l.ptrace(17,1,0,0); print("rc",r,os.strerror(e))'`, "rc -1 Operation not permitted", ""},
		{"agent memory and environment", `cat /proc/1/environ 2>&1; head -c 1 /proc/1/mem 2>&1; echo done`, "Permission denied", ""},
		{"interfaces", `cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' '`, "eth0 lo ", ""},
		{"host loopback service", probe(fmt.Sprintf("127.0.0.1:%d", hostPort), "127.0.0.1:"+apiPort), "Connection refused", ""},
		{"host services through the gateway", probe(fmt.Sprintf("%s:%d", gw, hostPort), gw.String()+":"+apiPort, gw.String()+":22"), "No route to host", ""},
		{"metrics listener", probe(append(metricsTargets, net.JoinHostPort(gw.String(), metricsPort))...), "No route to host", ""},
		{"cloud metadata", probe("169.254.169.254:80", "[fd00:ec2::254]:80"), "refused 169.254.169.254:80 [Errno 113] No route to host", ""},
		{"other sandbox", probe("127.0.0.1:8000", nbAddr.String()+":8000"), "refused " + nbAddr.String() + ":8000", ""},
		{"IPv6 to the host", probe("[fe80::1%eth0]:22", "[::1]:"+apiPort), "Cannot assign requested address", ""},
		{"reconfigure the sandbox's network", `python3 -c 'import fcntl,socket,struct; s=socket.socket(); fcntl.ioctl(s, 0x8914, struct.pack("16sh22x", b"eth0", 0))' 2>&1; ip link set eth0 down 2>&1; echo done`, "Operation not permitted", "Inappropriate ioctl for device"}, // gVisor's netstack has no such ioctl at all
		{"forged source address", fmt.Sprintf(`python3 - <<'EOF'
import socket
s = socket.socket()
s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: bind an address that is not ours
s.bind((%q, 0))
s.settimeout(3)
try:
    s.connect((%q, 53)); print("CONNECTED")
except OSError as e:
    print("refused", e)
EOF`, nbAddr.String(), gw.String()), "refused", "Cannot assign requested address"}, // the box's kernel or, failing that, the host's anti-spoofing rule; gVisor's netstack refuses the bind itself (no IP_FREEBIND)
		{"devices", `ls /dev; cat /dev/sda 2>&1; cat /dev/mem 2>&1; echo done`, "No such file", ""},
		// Set-uid programs work (sudo); what they give is this box's root,
		// with the capabilities below, never more.
		{"new privileges", `grep -E 'NoNewPrivs|Seccomp:' /proc/self/status`, "NoNewPrivs:\t0", ""},
		{"capabilities", `grep CapBnd /proc/self/status`, "CapBnd:\t00000000800405fb", ""},
		// The kernel keyrings: under runc the box shares sbx's session
		// keyring (runc --no-new-keyring, see internal/runtime/runc), so
		// keyctl (250 on x86-64) must be refused and /proc/keys empty.
		// KEYCTL_GET_KEYRING_ID (0) of the session keyring (-3), then
		// KEYCTL_READ (11) of it. gVisor's keyrings are the Sentry's own:
		// the box gets an id of its session keyring there, never the
		// host's, and cannot read it.
		{"kernel keyrings", `python3 -c 'import ctypes,os; l=ctypes.CDLL(None,use_errno=True); r=l.syscall(250,0,-3,0); e=ctypes.get_errno(); b=ctypes.create_string_buffer(256); q=l.syscall(250,11,-3,b,256); print("rc",r,os.strerror(e),q)'; cat /proc/keys 2>&1 | wc -c`, "rc -1 Operation not permitted -1\n0", " Success -1\n"},
		{"agent binary is read-only", `echo x > /.sbx/sbx-agent 2>&1; echo done`, "Read-only file system", ""},
		// gVisor lets a box checkpoint itself through this file only when
		// runsc is told to allow it; sbx takes checkpoints, the box never
		// (the agent only reads it, to learn when one is over).
		{"trigger a checkpoint", `echo 1 > /proc/gvisor/checkpoint 2>&1; echo done`, "No such file or directory", "Operation not permitted"},
		// Under runc the classic breakout reaches the box's root (whose
		// PID 1 is the agent), never the host's. gVisor does not even let
		// ".." leave the chroot: the process stays in the empty /tmp/c.
		{"chroot breakout", `python3 -c 'import os; os.makedirs("/tmp/c", exist_ok=True); os.chroot("/tmp/c"); [os.chdir("..") for _ in range(50)]; os.chroot("."); print(open("/proc/1/cmdline").read())' 2>&1`, "sbx-agent", "No such file or directory: '/proc/1/cmdline'"},
		// runc's seccomp profile refuses new user namespaces. Under gVisor
		// a user namespace is a data structure of the Sentry, exposing no
		// host kernel code, and gVisor allows it: root in it is still the
		// box's root (below, the mapping is checked from the host).
		{"unshare user namespace", `unshare -U -r id 2>&1; echo done`, "Operation not permitted", "uid=0(root) gid=0(root) groups=0(root)\ndone"},
		// The Sentry's own view is an identity map of its kernel; the host
		// side of the mapping (root in the box is host uid 100000000) is
		// checked below from the host.
		{"root is mapped to an unprivileged host id", `cat /proc/self/uid_map /proc/self/gid_map; touch /owned-by-box-root`, "0  100000000      65536", "0          0 4294967295"},
	}
	// The default user becomes the box's root with sudo, as on E2B: each
	// attempt is made both as root (the API's user "root") and so.
	if res := mustRun(t, ctx, sb, `id -u; sudo -n id -u`, nil); res.Stdout != "1000\n0\n" {
		t.Fatalf("user and sudo: %q %q", res.Stdout, res.Stderr)
	}
	for _, via := range []string{"root", "sudo"} {
		for _, a := range attempts {
			t.Run(via+"/"+a.name, func(t *testing.T) {
				opts, cmd := root, a.cmd
				if via == "sudo" {
					opts, cmd = nil, "sudo -n bash -c "+shellQuote(a.cmd)
				}
				res := mustRun(t, ctx, sb, cmd, opts)
				out := res.Stdout + res.Stderr
				if strings.Contains(out, "CONNECTED") {
					t.Fatalf("a connection succeeded: %q", out)
				}
				want := a.ok
				if a.runsc != "" && harness.Runtime() == "runsc" {
					want = a.runsc
				}
				if !strings.Contains(out, want) {
					t.Fatalf("output %q does not show the attempt failing (want %q)", out, want)
				}
			})
		}
	}
	// Consequences on the host.
	if b, _ := os.ReadFile(secret); string(b) != "host-secret" {
		t.Fatal("host file changed")
	}
	if _, err := os.Stat(filepath.Join(secretDir, "pwned")); !os.IsNotExist(err) {
		t.Fatal("sandbox wrote to the host")
	}
	select {
	case <-accepted:
		t.Fatal("a sandbox reached a host loopback service")
	default:
	}
	// Seen from the host, the sandbox's root processes (under runsc, the
	// Sentry and so every process of the box) run as the unprivileged
	// mapped uid, never as uid 0, and what root in the box creates is owned
	// by that uid.
	var fst unix.Stat_t
	if err := unix.Stat(filepath.Join(srv.DataDir, "sandboxes", sb.ID, "disk", "upper", "owned-by-box-root"), &fst); err != nil {
		t.Fatal(err)
	} else if fst.Uid != 100000000 || fst.Gid != 100000000 {
		t.Fatalf("a file root made in the box is owned by host %d:%d, want 100000000", fst.Uid, fst.Gid)
	}
	st, err := os.ReadFile(filepath.Join(srv.DataDir, "sandboxes", sb.ID, "bundle", "init.pid"))
	if err == nil {
		status, err := os.ReadFile("/proc/" + strings.TrimSpace(string(st)) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(status), "Uid:\t100000000\t100000000\t100000000\t100000000") {
			t.Fatalf("the agent's host uid is not the mapped one:\n%s", status)
		}
	} else {
		t.Fatalf("read the box's pid file: %v", err)
	}
	res := mustRun(t, ctx, sb, `cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' '`, nil)
	if strings.TrimSpace(res.Stdout) != "eth0 lo" {
		t.Fatalf("interfaces: %q", res.Stdout)
	}

	t.Run("fork bomb", func(t *testing.T) {
		opts := client.CreateOptions{}
		if harness.Runtime() == "runsc" {
			// Each gVisor task costs the Sentry host memory (see "pids
			// exhausted"): with 256 MiB the bomb would end as a memory
			// bomb (the box OOM-killed alone, tested below). With room,
			// what is tested is the pids limit.
			opts.MemoryMB = 2048
		}
		bombed, err := c.CreateSandbox(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		// The bomb's forks failing with EAGAIN is the limit holding; bash
		// says so on stderr ("fork: retry: Resource temporarily
		// unavailable"), which the sleeping parent keeps open.
		refused := make(chan struct{})
		var once sync.Once
		stderr := writerFunc(func(p []byte) {
			if bytes.Contains(p, []byte("Resource temporarily unavailable")) {
				once.Do(func() { close(refused) })
			}
		})
		if _, err := bombed.Start(ctx, client.ExecOptions{Cmd: "/bin/bash", Args: []string{"-c", "b(){ b|b& }; b; sleep 600"}, Stderr: stderr}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-refused:
		case <-time.After(60 * time.Second):
			t.Fatalf("the bomb's forks were never refused (%d tasks in its cgroup)", pidsCurrent(t, bombed.ID))
		}
		if harness.Runtime() == "runsc" {
			// The host cgroup counts the Sentry's threads and systrap's
			// stub processes, limited to 4×256+512 (see the runsc
			// driver); the box's own limit is the Sentry's task limit,
			// which the host cannot count: the refused forks above are
			// it holding, and "pids limit holds against root" and "pids
			// exhausted" below measure where it stands.
			if n := pidsCurrent(t, bombed.ID); n > 4*256+512 {
				t.Fatalf("%d host tasks for a gVisor box limited to %d", n, 4*256+512)
			}
		} else {
			// Under runc the shells hold their slots; wait until the
			// bomb fills the limit, then it must hold.
			deadline := time.Now().Add(60 * time.Second)
			for n := 0; n < 240; n = pidsCurrent(t, bombed.ID) {
				if time.Now().After(deadline) {
					t.Fatalf("the bomb never reached the pids limit (%d tasks)", n)
				}
				time.Sleep(50 * time.Millisecond) // polling a cgroup counter: there is no event for it
			}
			if n := pidsCurrent(t, bombed.ID); n > 256 {
				t.Fatalf("%d tasks in a sandbox limited to 256", n)
			}
		}
		// The server and other sandboxes are unaffected while it rages,
		// and the bombed sandbox can still be killed, releasing it all.
		assertHealthy(t, ctx, srv, neighbour)
		assertHealthy(t, ctx, srv, sb)
		// Commands in the bombed sandbox fail fast and say why, or run
		// when they win a slot the bomb just freed; they never hang.
		for i := 0; i < 5; i++ {
			if _, err := bombed.Exec(ctx, client.ExecOptions{Cmd: "true"}); err != nil && !errors.Is(err, client.ErrUnavailable) {
				t.Fatalf("exec in a sandbox at its pids limit: want success or unavailable, got %v", err)
			}
		}
		if err := bombed.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/sys/fs/cgroup/pids/sbx/" + bombed.ID, "/sys/fs/cgroup/sbx/" + bombed.ID} {
			if _, err := os.Stat(p); err == nil {
				t.Fatalf("cgroup %s left after kill", p)
			}
		}
	})
	t.Run("pids limit holds against root", func(t *testing.T) {
		// Root in the box tries to lift its pids limit (RLIMIT_NPROC, and
		// any pids.max it can reach), then forks far past it, spread
		// over 40 uids of 20 processes each (800 in all), so that no
		// per-user count can be what holds: the whole box must stop at
		// its limit of 256 tasks, with EAGAIN, on every runtime.
		opts := client.CreateOptions{}
		if harness.Runtime() == "runsc" {
			opts.MemoryMB = 2048 // as in "fork bomb": the limit, not memory, is tested
		}
		box, err := c.CreateSandbox(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer box.Kill(ctx) // when a check below fails
		out := newWatcher()
		_, err = box.Start(ctx, client.ExecOptions{User: "root", Cmd: "python3", Args: []string{"-c", `
import glob, os, resource, time
try:
    resource.setrlimit(resource.RLIMIT_NPROC, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("rlimit raised", flush=True)
except (ValueError, OSError) as e:
    print("rlimit refused", e, flush=True)
for f in glob.glob("/sys/fs/cgroup/**/pids.max", recursive=True):
    try:
        with open(f, "w") as w:
            w.write("max")
        print("wrote", f, flush=True)
    except OSError as e:
        print("refused", f, e.errno, flush=True)
r, w = os.pipe()
users, errno = 0, 0
for u in range(40):
    try:
        pid = os.fork()
    except OSError as e:
        errno = e.errno
        break
    if pid == 0:
        os.close(r)
        n, err = 0, 0
        try:
            os.setgroups([])
            os.setgid(20000 + u)
            os.setuid(20000 + u)
            while n < 20:
                try:
                    c = os.fork()
                except OSError as e:
                    err = e.errno
                    break
                if c == 0:
                    time.sleep(1e9)
                    os._exit(0)
                n += 1
        except OSError as e:
            err = -e.errno
        os.write(w, b"%d %d\n" % (n, err))
        time.sleep(1e9)
        os._exit(0)
    users += 1
os.close(w)
total = users
with os.fdopen(r) as lines:
    for _ in range(users):
        n, err = map(int, lines.readline().split())
        total += n
        if err < 0:
            print("setuid failed", -err, flush=True)
        errno = errno or err
print("full", total, errno, users, flush=True)
time.sleep(1e9)
`}, Stdout: out})
		if err != nil {
			t.Fatal(err)
		}
		out.await(t, "full")
		t.Logf("root's attempts: %s", out.buf)
		if bytes.Contains(out.buf, []byte("setuid failed")) {
			t.Fatalf("root in the box could not take the uids the test spreads over: %s", out.buf)
		}
		var n, errno, users int
		if _, err := fmt.Sscanf(string(out.buf[bytes.Index(out.buf, []byte("full")):]), "full %d %d %d", &n, &errno, &users); err != nil || errno != int(unix.EAGAIN) || n > 256 {
			t.Fatalf("root forked %d processes over %d uids (errno %d) after trying to raise a limit of 256; want EAGAIN at 256 or fewer (%v)", n, users, errno, err)
		}
		// The box's other tasks (the agent's) hold a few slots; what
		// stopped the forks is the limit, not memory or a per-uid count.
		if n < 230 || users < 12 {
			t.Fatalf("root's forks stopped at %d over %d uids; want the box's limit of 256 reached across uids", n, users)
		}
		// A box at its limit may answer requests for its processes as
		// unavailable (see "pids exhausted"); killing the sandbox, which
		// releases it all, must work.
		if err := box.Kill(ctx); err != nil {
			t.Fatalf("kill a sandbox at its pids limit: %v", err)
		}
	})
	t.Run("pids exhausted", func(t *testing.T) {
		// Fill the pids limit with processes that stay, so that no slot
		// frees up: a command must then be refused as unavailable.
		sb := sb
		if harness.Runtime() == "runsc" {
			// Under gVisor each process also costs the Sentry host
			// memory (a few MiB: its stub process, page tables), more
			// than 256 of them fit in 256 MiB; this sandbox gets the
			// memory to reach its pids limit, which is what is tested.
			var err error
			if sb, err = c.CreateSandbox(ctx, client.CreateOptions{MemoryMB: 2048}); err != nil {
				t.Fatal(err)
			}
			defer sb.Kill(ctx)
		}
		out := newWatcher()
		filler, err := sb.Start(ctx, client.ExecOptions{Cmd: "python3", Args: []string{"-c", `
import os, time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        print("full", n, e.errno, flush=True)
        break
    if pid == 0:
        time.sleep(1e9)
        os._exit(0)
    n += 1
time.sleep(1e9)
`}, Stdout: out})
		if err != nil {
			t.Fatal(err)
		}
		out.await(t, "full")
		// The filler and its children hold all but a few slots (the
		// agent's): the ceiling is the limit, not memory.
		var n, errno int
		if _, err := fmt.Sscanf(string(out.buf[bytes.Index(out.buf, []byte("full")):]), "full %d %d", &n, &errno); err != nil || errno != int(unix.EAGAIN) || n < 230 || n > 255 {
			t.Fatalf("the filler stopped at %q, want EAGAIN after 230-255 forks (%v)", out.buf, err)
		}
		if _, err := sb.Exec(ctx, client.ExecOptions{Cmd: "true"}); !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("exec with the pids limit full: want unavailable, got %v", err)
		}
		if err := filler.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := filler.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if r := mustRun(t, ctx, sb, "echo alive", nil); r.Stdout != "alive\n" {
			t.Fatalf("after freeing the pids: %+v", r)
		}
	})
	t.Run("memory bomb", func(t *testing.T) {
		if harness.Runtime() == "runsc" {
			// gVisor keeps the box's memory in the Sentry, which has no
			// OOM killer of its own: at the limit the host's OOM killer
			// ends the Sentry, and so the whole box, alone in its
			// cgroup. What must hold is that the host, the server and
			// the neighbours are unaffected and the box is gone.
			bomb, err := c.CreateSandbox(ctx, client.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = bomb.Run(ctx, `python3 -c 'x=[]
while True: x.append(bytearray(16<<20))'; echo exit=$?`, nil)
			if err == nil {
				t.Fatal("the memory bomb ended and its box survived: gVisor's box should have been OOM-killed as a whole")
			}
			assertHealthy(t, ctx, srv, neighbour)
			assertHealthy(t, ctx, srv, sb)
			// The server noticed the box die (it watches each box's
			// init) and says why, rather than listing it as running.
			info := awaitState(t, ctx, c, bomb.ID, "failed", 10*time.Second)
			if info.State != "failed" || !strings.Contains(info.Error, "out of memory") {
				t.Fatalf("the OOM-killed sandbox is %q (%q), want failed for running out of memory", info.State, info.Error)
			}
			if _, err := bomb.Exec(ctx, client.ExecOptions{Cmd: "true"}); !errors.Is(err, client.ErrUnavailable) {
				t.Fatalf("exec in the OOM-killed sandbox: want unavailable (502, as E2B answers for a sandbox gone), got %v", err)
			}
			if err := bomb.Kill(ctx); err != nil {
				t.Fatalf("kill the OOM-killed box: %v", err)
			}
			if _, err := c.GetSandbox(ctx, bomb.ID); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("the failed sandbox after kill: want not found, got %v", err)
			}
			return
		}
		res := mustRun(t, ctx, sb, `python3 -c 'x=[]
while True: x.append(bytearray(16<<20))'; echo exit=$?`, nil)
		if !strings.Contains(res.Stdout, "exit=137") {
			t.Fatalf("memory bomb was not OOM-killed inside the sandbox: %+v", res)
		}
		assertHealthy(t, ctx, srv, neighbour)
		if r := mustRun(t, ctx, sb, "echo alive", nil); r.Stdout != "alive\n" {
			t.Fatalf("sandbox after OOM: %+v", r)
		}
	})
	t.Run("disk fill", func(t *testing.T) {
		// The quota (128 MiB) stops the sandbox, not the host.
		res := mustRun(t, ctx, sb, `dd if=/dev/zero of=/home/user/fill bs=1M count=1024 2>&1; echo rc=$?; df -m / | tail -1`, nil)
		if !strings.Contains(res.Stdout, "No space left on device") || !strings.Contains(res.Stdout, "rc=1") {
			t.Fatalf("filling the disk: %+v", res)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(srv.DataDir, &st); err != nil {
			t.Fatal(err)
		}
		if free := int64(st.Bavail) * st.Bsize; free < 1<<30 {
			t.Fatalf("the host has only %d bytes free after the fill", free)
		}
		// An upload into the full sandbox is refused as such (507).
		if _, err := sb.WriteFile(ctx, "/home/user/more", strings.NewReader(strings.Repeat("x", 4<<20)), nil); !errors.Is(err, client.ErrNoSpace) {
			t.Fatalf("upload into a full sandbox: want ErrNoSpace, got %v", err)
		}
		assertHealthy(t, ctx, srv, neighbour)
		if r := mustRun(t, ctx, neighbour, "echo fine > /home/user/x && cat /home/user/x", nil); r.Stdout != "fine\n" {
			t.Fatalf("neighbour cannot write: %+v", r)
		}
		if r := mustRun(t, ctx, sb, "rm /home/user/fill && echo again > /home/user/y && cat /home/user/y", nil); r.Stdout != "again\n" {
			t.Fatalf("after freeing the disk: %+v", r)
		}
	})
	t.Run("disk of one sandbox is its own", func(t *testing.T) {
		mustRun(t, ctx, sb, "echo mine > /tmp/only-here", nil)
		r := mustRun(t, ctx, neighbour, "cat /tmp/only-here 2>&1; echo done", nil)
		if !strings.Contains(r.Stdout, "No such file") {
			t.Fatalf("neighbour sees the file: %q", r.Stdout)
		}
	})
}

// shellQuote quotes s as one word for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func assertHealthy(t *testing.T, ctx context.Context, srv *harness.Server, sb *client.Sandbox) {
	t.Helper()
	if err := srv.Client.Health(ctx); err != nil {
		t.Fatalf("server unhealthy: %v", err)
	}
	if r := mustRun(t, ctx, sb, "echo ok", nil); r.Stdout != "ok\n" {
		t.Fatalf("neighbour sandbox: %+v", r)
	}
}

// probe returns a command that tries a TCP connection to each host:port and
// prints CONNECTED or the error for each.
func probe(addrs ...string) string {
	var b strings.Builder
	b.WriteString("python3 - <<'EOF'\nimport socket\n")
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		fmt.Fprintf(&b, "try:\n    socket.create_connection((%q, %s), 2); print('CONNECTED %s')\nexcept OSError as e:\n    print('refused %s', e)\n", host, port, a, a)
	}
	b.WriteString("EOF")
	return b.String()
}

// pidsCurrent reads the number of tasks in sandbox id's pids cgroup (v1 or v2).
func pidsCurrent(t *testing.T, id string) int {
	t.Helper()
	for _, p := range []string{"/sys/fs/cgroup/pids/sbx/" + id + "/pids.current", "/sys/fs/cgroup/sbx/" + id + "/pids.current"} {
		if b, err := os.ReadFile(p); err == nil {
			n, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no pids cgroup for sandbox %s", id)
	return 0
}

// writerFunc is an io.Writer that hands every write to a function.
type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// TestEscapeVolumeSymlinks: a sandbox plants symlinks, FIFOs and hard
// links in a volume it mounts, then the volume-content API (which runs as
// host root) is asked to follow them. It must never read, write, list,
// chmod or remove the host's files or another volume's.
func TestEscapeVolumeSymlinks(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "secret")
	if err := os.WriteFile(secret, []byte("host-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	mine, err := c.CreateVolume(ctx, "mine", 16)
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.CreateVolume(ctx, "other", 16)
	if err != nil {
		t.Fatal(err)
	}
	of := c.Volume(other)
	if _, err := of.Write(ctx, "/private.txt", strings.NewReader("other-volume"), -1, client.VolumeOwner{}); err != nil {
		t.Fatal(err)
	}
	otherHost := filepath.Join(srv.DataDir, "volumes", other.ID, "data")
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Volumes: map[string]string{"/vol": "mine"}})
	if err != nil {
		t.Fatal(err)
	}
	root := &client.RunOptions{User: "root"}
	plant := fmt.Sprintf(`cd /vol && ln -s %s secret && ln -s / hostroot && ln -s ../../../../../../../..%s rel &&
ln -s %s othervol && ln -s /proc/1/root/etc procroot && mkdir d && ln -s %s d/up && mkfifo fifo &&
(ln /etc/passwd hardlink 2>&1 || true) && ls %s 2>&1; echo planted`, secret, secret, otherHost, secretDir, otherHost)
	res := mustRun(t, ctx, sb, plant, root)
	if !strings.Contains(res.Stdout, "planted") {
		t.Fatalf("planting: %q %q", res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "No such file") {
		t.Fatalf("the sandbox sees the other volume's host directory: %q", res.Stdout)
	}
	f := c.Volume(mine)
	for _, p := range []string{"/secret", "/hostroot/etc/shadow", "/hostroot" + secret, "/rel", "/othervol/private.txt", "/procroot/shadow", "/d/up/secret", "/hardlink"} {
		r, err := f.Read(ctx, p)
		if err == nil {
			b, _ := io.ReadAll(r)
			r.Close()
			t.Errorf("read %s through the content API: %q", p, b)
			continue
		}
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.StatusCode < 400 || ae.StatusCode >= 500 {
			t.Errorf("read %s: %v, want a 4xx", p, err)
		}
	}
	// A FIFO is refused at once, not read forever. (Under gVisor a FIFO
	// is the Sentry's own and the host sees no file at all.)
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if _, err := f.Read(fctx, "/fifo"); !errors.Is(err, client.ErrInvalidArgument) && !(harness.Runtime() == "runsc" && errors.Is(err, client.ErrNotFound)) {
		t.Errorf("read a FIFO: %v, want invalid argument", err)
	}
	cancel()
	for _, p := range []string{"/hostroot", "/othervol", "/d/up"} {
		if list, err := f.List(ctx, p, 1); err == nil {
			t.Errorf("list %s: %d entries, want a refusal", p, len(list))
		}
	}
	list, err := f.List(ctx, "/", 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if strings.Contains(e.Path, "private.txt") || strings.Contains(e.Path, "secret/") || strings.HasPrefix(e.Path, "/hostroot/") {
			t.Errorf("a listing followed a symlink out of the volume: %s", e.Path)
		}
	}
	for _, p := range []string{"/hostroot" + secretDir + "/pwned", "/othervol/pwned", "/d/up/pwned", "/secret"} {
		if _, err := f.Write(ctx, p, strings.NewReader("pwned"), -1, client.VolumeOwner{}); err == nil && p != "/secret" {
			t.Errorf("write %s through the content API succeeded", p)
		}
		if _, err := f.MakeDir(ctx, p+"-dir", true, client.VolumeOwner{}); err == nil && p != "/secret" {
			t.Errorf("mkdir %s-dir through the content API succeeded", p)
		}
	}
	mode := uint32(0o666)
	if _, err := f.SetMetadata(ctx, "/d/up/secret", client.VolumeOwner{Mode: &mode}); err == nil {
		t.Error("chmod through a symlink out of the volume succeeded")
	}
	uid := uint32(0)
	if _, err := f.SetMetadata(ctx, "/hostroot/etc", client.VolumeOwner{UID: &uid}); err == nil {
		t.Error("chown through a symlink out of the volume succeeded")
	}
	// Removing the links removes links, never what they point to.
	for _, p := range []string{"/d", "/hostroot", "/othervol", "/rel"} {
		if err := f.Remove(ctx, p); err != nil {
			t.Errorf("remove %s: %v", p, err)
		}
	}
	b, err := os.ReadFile(secret)
	if err != nil || string(b) != "host-secret" {
		t.Fatalf("the host's secret changed: %q %v", b, err)
	}
	if st, err := os.Stat(secret); err != nil || st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("the host's secret's metadata changed: %v %v", st, err)
	}
	for _, p := range []string{filepath.Join(secretDir, "pwned"), filepath.Join(otherHost, "pwned"), filepath.Join(secretDir, "pwned-dir")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created on the host", p)
		}
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatalf("/etc/passwd: %v", err)
	}
	if s := readVolume(t, ctx, of, "/private.txt"); s != "other-volume" {
		t.Fatalf("the other volume changed: %q", s)
	}
	assertHealthy(t, ctx, srv, sb)
}

// TestEscapeTemplateSetuid: a host user, not a sandbox, tries the
// templates' set-uid files. On disk they belong to the sandboxes' ids
// (the base's su and passwd, set-uid to the host uid that is every
// sandbox's root), so running one would make a host user the owner of
// every sandbox's files. The template store must not let a host user
// reach them.
func TestEscapeTemplateSetuid(t *testing.T) {
	harness.Start(t) // makes sure the base template is there
	var setuid []string
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib"} {
		root := filepath.Join(harness.TemplatesDir(), "base", "rootfs", d)
		filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Mode()&os.ModeSetuid != 0 {
				setuid = append(setuid, p)
			}
			return nil
		})
	}
	if len(setuid) == 0 {
		t.Fatal("no set-uid file in the base template: nothing to try")
	}
	for _, p := range setuid {
		// Through a shell: setpriv's own exec still resolves the path
		// with root's access.
		cmd := osexec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c", `exec "$0" --help`, p)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Errorf("a host user ran %s: %v\n%s", p, err, out)
		}
	}
}

// TestEscapeSandboxSetuid: set-uid programs work inside a box (the base's
// sudo), so root in a box can make set-uid files, owned on the host by the
// uid that is every box's root. A host user who ran one would become that
// uid and own every box's files: none may be reached from the host, in the
// sandbox's mounted root filesystem, its upper layer or a snapshot's layer.
func TestEscapeSandboxSetuid(t *testing.T) {
	srv := harness.Start(t, "--disk-mb", "128")
	ctx := ctxFor(t, 3*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Kill(context.WithoutCancel(ctx))
	// In the box it works: the user runs the set-uid copy as root.
	res := mustRun(t, ctx, sb, `sudo -n install -m 4755 /usr/bin/id /usr/local/bin/suid-id && /usr/local/bin/suid-id -u && id -u`, nil)
	if res.Stdout != "0\n1000\n" {
		t.Fatalf("a set-uid file made in the box: stdout %q, stderr %q; want euid 0 for it, 1000 without", res.Stdout, res.Stderr)
	}
	snap, err := sb.CreateSnapshot(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(srv.DataDir, "sandboxes", sb.ID)
	snapDir := filepath.Join(srv.DataDir, "snapshots", snap.SnapshotID)
	for _, d := range []string{dir, snapDir} {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 || st.Gid != 100000000 || st.Mode&0o7777 != 0o710 {
			t.Errorf("%s: owner %d:%d mode %o; want 0:100000000 0710", d, st.Uid, st.Gid, st.Mode&0o7777)
		}
	}
	var found []string
	for _, p := range []string{
		filepath.Join(dir, "rootfs"),
		filepath.Join(dir, "disk", "upper"),
		filepath.Join(dir, "upper"),
		filepath.Join(snapDir, "layer"),
	} {
		p = filepath.Join(p, "usr", "local", "bin", "suid-id")
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		if st.Mode&unix.S_ISUID == 0 || st.Uid != 100000000 {
			t.Errorf("%s: mode %o owner %d; want set-uid, owned by the box's root", p, st.Mode, st.Uid)
		}
		found = append(found, p)
	}
	// The mounted rootfs, one upper layer and the snapshot's layer.
	if len(found) != 3 {
		t.Fatalf("the set-uid file is at %v on the host; want it in the rootfs, the upper layer and the snapshot", found)
	}
	for _, p := range found {
		// A host user (nobody) tries it, through a shell as in
		// TestEscapeTemplateSetuid.
		cmd := osexec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c", `exec "$0" -u`, p)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Errorf("a host user ran %s: %v\n%s", p, err, out)
		}
	}
}
