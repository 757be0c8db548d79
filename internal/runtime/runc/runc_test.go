package runc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/runtime/bundle"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/template"
)

// The driver tests run real boxes: real runc (DefaultBinary, installed by
// scripts/setup.sh), a rootfs that is an overlay of the base template (built
// once into the shared test cache) and, as init, testdata/boxinit, a tiny
// stand-in for the agent that runs commands sent over the agent listener.
// They need root and fail, never skip, without it.

// sharedTemplates is shared with internal/template's tests.
const sharedTemplates = "/var/cache/sbx-test/templates"

// childEnv makes the test binary act as the process that starts a box and
// exits (TestBoxOutlivesStarter).
const childEnv = "SBX_RUNC_TEST_START"

var env struct {
	once    sync.Once
	err     error
	boxinit string // static test init binary
	lower   string // base template rootfs
	root    string // runc state dir
	tmp     string
}

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		if err := startChild(v); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Boxes get at most the starter's hard RLIMIT_NOFILE (see bundle.MaxNofile);
	// raise it as sbx's service unit would, so TestBoxSecurity sees the full
	// value.
	// syscall's Setrlimit, not unix's: it also stops the Go runtime from
	// restoring the old limit in child processes.
	// Best effort: it needs CAP_SYS_RESOURCE.
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: bundle.MaxNofile, Max: bundle.MaxNofile})
	code := m.Run()
	if env.root != "" {
		// Whatever a failed test left behind.
		rt := &Runtime{bin: DefaultBinary, root: env.root}
		entries, _ := os.ReadDir(env.root)
		for _, e := range entries {
			rt.Destroy(context.Background(), e.Name())
		}
		os.RemoveAll(env.tmp)
	}
	os.Exit(code)
}

// setup prepares what every box test needs, once.
func setup(t *testing.T) {
	t.Helper()
	env.once.Do(func() {
		if os.Geteuid() != 0 {
			env.err = errors.New("the runc driver tests need root (namespaces, cgroups, overlay mounts)")
			return
		}
		if _, err := New(Options{Binary: DefaultBinary, Root: filepath.Join(os.TempDir(), "sbx-runc-probe")}); err != nil {
			env.err = fmt.Errorf("runc missing or unusable (run scripts/setup.sh): %w", err)
			return
		}
		os.RemoveAll(filepath.Join(os.TempDir(), "sbx-runc-probe"))
		tmp, err := os.MkdirTemp("", "sbx-runc-test")
		if err != nil {
			env.err = err
			return
		}
		env.tmp = tmp
		env.root = filepath.Join(tmp, "state")
		env.boxinit = filepath.Join(tmp, "boxinit")
		build := exec.Command("go", "build", "-o", env.boxinit, "./testdata/boxinit")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if p := os.Getenv("SBX_TEST_BOXINIT"); p != "" {
			// Prebuilt (the cgroup v2 test VM has no Go toolchain).
			build = exec.Command("cp", p, env.boxinit)
		}
		if out, err := build.CombinedOutput(); err != nil {
			env.err = fmt.Errorf("build boxinit: %v\n%s", err, out)
			return
		}
		store, err := template.NewStore(sharedTemplates, nil)
		if err != nil {
			env.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		if err := store.EnsureBase(ctx, os.Stderr); err != nil {
			env.err = fmt.Errorf("base template: %w", err)
			return
		}
		info, err := store.Get(template.BaseName)
		if err != nil {
			env.err = err
			return
		}
		env.lower = info.RootfsPath
	})
	if env.err != nil {
		t.Fatal(env.err)
	}
}

func newRuntime(t *testing.T) *Runtime {
	t.Helper()
	setup(t)
	rt, err := New(Options{Root: env.root})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// box is one test box's host-side paths.
type box struct {
	id     string
	dir    string // holds upper, work, rootfs, bundle
	rootfs string // overlay mount
	bundle string
	sock   string // agent listener path
}

// prepare makes a box's rootfs (an overlay of the base template, as the
// Manager will) and bundle dir, and registers their cleanup.
func prepare(t *testing.T, rt *Runtime) box {
	t.Helper()
	b := box{id: newID()}
	b.dir = filepath.Join(env.tmp, b.id)
	b.rootfs = filepath.Join(b.dir, "rootfs")
	b.bundle = filepath.Join(b.dir, "bundle")
	b.sock = filepath.Join(b.dir, "agent.sock")
	for _, d := range []string{"upper", "work", "rootfs", "bundle"} {
		if err := os.MkdirAll(filepath.Join(b.dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", env.lower, filepath.Join(b.dir, "upper"), filepath.Join(b.dir, "work"))
	if err := unix.Mount("overlay", b.rootfs, "overlay", 0, opts); err != nil {
		t.Fatalf("overlay mount: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Destroy(context.Background(), b.id); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		unix.Unmount(b.rootfs, unix.MNT_DETACH)
		os.RemoveAll(b.dir)
	})
	return b
}

func (b box) spec(limits sandbox.Limits) sandbox.BoxSpec {
	return sandbox.BoxSpec{
		ID:        b.id,
		Rootfs:    b.rootfs,
		BundleDir: b.bundle,
		AgentPath: env.boxinit,
		Env:       []string{"PATH=/usr/bin:/bin", "SBX_TEST_ENV=" + b.id},
		Hostname:  "box-" + b.id[:6],
		Limits:    limits,
	}
}

var testLimits = sandbox.Limits{CPUs: 1, MemoryBytes: 256 << 20, Pids: 64}

// listen binds the agent listener at path and returns it as a file; the
// socket file stays when the listener is closed (the box keeps serving it).
func listen(path string) (*os.File, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	defer l.Close()
	return l.File()
}

// start prepares and starts a box.
func start(t *testing.T, rt *Runtime, limits sandbox.Limits) box {
	t.Helper()
	b := prepare(t, rt)
	f, err := listen(b.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec := b.spec(limits)
	spec.AgentListener = f
	if err := rt.Start(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	return b
}

type result struct {
	Exit   int    `json:"exit"`
	Signal string `json:"signal"`
	Output string `json:"output"`
	Err    string `json:"err"`
}

// call runs args in box b through its init and returns the result.
func call(b box, timeout time.Duration, args ...string) (result, error) {
	c, err := net.DialTimeout("unix", b.sock, timeout)
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(map[string]any{"args": args}); err != nil {
		return result{}, err
	}
	var r result
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		return result{}, err
	}
	return r, nil
}

func mustCall(t *testing.T, b box, args ...string) result {
	t.Helper()
	r, err := call(b, 60*time.Second, args...)
	if err != nil {
		t.Fatalf("%q in box: %v", args, err)
	}
	if r.Err != "" {
		t.Fatalf("%q in box: %s", args, r.Err)
	}
	return r
}

// statusField returns field of a /proc/<pid>/status text.
func statusField(status, field string) string {
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// wantCapMask is CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
// NET_BIND_SERVICE SYS_CHROOT SETFCAP (bits 0 1 3 4 5 6 7 8 10 18 31).
const wantCapMask = "00000000800405fb"

func TestBoxSecurity(t *testing.T) {
	rt := newRuntime(t)
	b := start(t, rt, testLimits)
	st, err := rt.State(context.Background(), b.id)
	if err != nil || !st.Exists || !st.Running || st.Paused || st.Pid <= 0 {
		t.Fatalf("State = %+v, %v; want running", st, err)
	}

	t.Run("InitStatus", func(t *testing.T) {
		// pid 1 is the agent itself; /proc/self is a process it started.
		for _, p := range []string{"/proc/1/status", "/proc/self/status"} {
			s := mustCall(t, b, "cat", p).Output
			for field, want := range map[string]string{
				"CapBnd": wantCapMask, "CapEff": wantCapMask, "CapPrm": wantCapMask,
				"CapInh": "0000000000000000", "CapAmb": "0000000000000000",
				"Seccomp": "2", "NoNewPrivs": "1",
			} {
				if got := statusField(s, field); got != want {
					t.Errorf("%s %s = %q, want %q", p, field, got, want)
				}
			}
		}
	})
	t.Run("Env", func(t *testing.T) {
		env := mustCall(t, b, "cat", "/proc/1/environ").Output
		if !slices.Contains(strings.Split(env, "\x00"), "SBX_TEST_ENV="+b.id) {
			t.Errorf("init env = %q", env)
		}
	})
	t.Run("Rlimits", func(t *testing.T) {
		// 1048576 unless this process lacks CAP_SYS_RESOURCE (then its own
		// hard limit, if lower).
		want := strconv.FormatUint(bundle.NofileLimit(), 10)
		r := mustCall(t, b, "sh", "-c", "ulimit -Sn; ulimit -Hn")
		if f := strings.Fields(r.Output); len(f) != 2 || f[0] != want || f[1] != want {
			t.Errorf("RLIMIT_NOFILE soft/hard = %q, want %s", r.Output, want)
		}
		if want != "1048576" {
			t.Logf("boxes get RLIMIT_NOFILE %s: the test process's hard limit", want)
		}
	})
	t.Run("Hostname", func(t *testing.T) {
		if got := strings.TrimSpace(mustCall(t, b, "cat", "/proc/sys/kernel/hostname").Output); got != "box-"+b.id[:6] {
			t.Errorf("hostname = %q", got)
		}
	})
	t.Run("ProcSysReadOnly", func(t *testing.T) {
		r := mustCall(t, b, "sh", "-c", "echo evil > /proc/sys/kernel/hostname")
		if r.Exit == 0 || !strings.Contains(r.Output, "Read-only file system") {
			t.Errorf("write to /proc/sys: %+v", r)
		}
	})
	t.Run("MountFails", func(t *testing.T) {
		r := mustCall(t, b, "mount", "-t", "tmpfs", "none", "/mnt")
		if r.Exit == 0 || !strings.Contains(r.Output, "permission denied") {
			t.Errorf("mount: %+v", r)
		}
		// A user namespace (where mount would be allowed) is no way around:
		// unshare is blocked too.
		r = mustCall(t, b, "unshare", "--user", "--mount", "--map-root-user", "mount", "-t", "tmpfs", "none", "/mnt")
		if r.Exit == 0 || !strings.Contains(r.Output, "Operation not permitted") {
			t.Errorf("unshare -U: %+v", r)
		}
	})
	t.Run("RawSocketFails", func(t *testing.T) {
		r := mustCall(t, b, "python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)")
		if r.Exit == 0 || !strings.Contains(r.Output, "PermissionError") {
			t.Errorf("raw socket: %+v", r)
		}
	})
	t.Run("OnlyLoopback", func(t *testing.T) {
		r := mustCall(t, b, "python3", "-c", "import socket; print(sorted(n for _, n in socket.if_nameindex()))")
		if strings.TrimSpace(r.Output) != "['lo']" {
			t.Errorf("interfaces: %+v", r)
		}
		// Nothing of the host is reachable, not even its loopback services.
		r = mustCall(t, b, "python3", "-c", "import socket; socket.create_connection(('10.0.2.2', 80), timeout=2)")
		if r.Exit == 0 || !strings.Contains(r.Output, "Network is unreachable") {
			t.Errorf("connect out: %+v", r)
		}
	})
	t.Run("AgentReadOnly", func(t *testing.T) {
		// Writing fails with ETXTBSY while the agent runs anyway; what
		// matters is the mount: read-only, nosuid, nodev.
		found := false
		for _, line := range strings.Split(mustCall(t, b, "cat", "/proc/self/mountinfo").Output, "\n") {
			f := strings.Fields(line)
			if len(f) > 5 && f[4] == agentapi.BinaryPath {
				found = true
				opts := strings.Split(f[5], ",")
				for _, want := range []string{"ro", "nosuid", "nodev"} {
					if !slices.Contains(opts, want) {
						t.Errorf("agent mount options %s lack %s", f[5], want)
					}
				}
			}
		}
		if !found {
			t.Errorf("no mount at %s", agentapi.BinaryPath)
		}
	})
	t.Run("Devices", func(t *testing.T) {
		r := mustCall(t, b, "ls", "/dev")
		got := strings.Fields(r.Output)
		allowed := []string{"console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}
		for _, d := range got {
			if !slices.Contains(allowed, d) {
				t.Errorf("unexpected /dev/%s", d)
			}
		}
		r = mustCall(t, b, "mknod", "/tmp/disk", "b", "8", "0")
		if r.Exit == 0 {
			t.Errorf("mknod succeeded: %+v", r)
		}
	})
	t.Run("ProcMasked", func(t *testing.T) {
		// Whatever of the masked paths this kernel has reads as empty.
		n := 0
		for _, p := range bundle.MaskedPaths {
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			n++
			cmd := "wc -c < " + p
			if fi.IsDir() {
				cmd = "ls -A " + p + " | wc -l"
			}
			if r := mustCall(t, b, "sh", "-c", cmd); strings.TrimSpace(r.Output) != "0" {
				t.Errorf("%s not masked: %+v", p, r)
			}
		}
		if n == 0 {
			t.Error("no masked path exists on this host; nothing was checked")
		}
	})

	// Resource limits last: they stress the box.
	t.Run("PidsLimit", func(t *testing.T) {
		if got := cgroupFile(t, b.id, "pids", "pids.max"); got != "64" {
			t.Errorf("pids.max = %q", got)
		}
		r := mustCall(t, b, "python3", "-c", forkLoop)
		f := strings.Fields(r.Output)
		if len(f) != 3 || f[0] != "stopped" || f[2] != "11" {
			t.Fatalf("fork loop was not stopped by EAGAIN: %+v", r)
		}
		if n, _ := strconv.Atoi(f[1]); n >= 64 || n < 10 {
			t.Errorf("fork loop made %d processes, want 10..63", n)
		}
		t.Logf("fork loop stopped after %d processes", mustAtoi(f[1]))
		mustCall(t, b, "true") // the box still works
	})
	t.Run("MemoryLimit", func(t *testing.T) {
		r := mustCall(t, b, "python3", "-c", "x = b'a' * (600 << 20); print('survived')")
		if r.Signal != "killed" {
			t.Fatalf("memory hog: %+v, want killed by SIGKILL", r)
		}
		if n := oomKills(t, b.id); n < 1 {
			t.Errorf("cgroup recorded %d OOM kills", n)
		}
		// The box's init and the host (this process) are unaffected.
		if r := mustCall(t, b, "true"); r.Exit != 0 {
			t.Errorf("box broken after OOM: %+v", r)
		}
		if st, _ := rt.State(context.Background(), b.id); !st.Running {
			t.Errorf("box not running after OOM: %+v", st)
		}
	})
}

const forkLoop = `
import os, time
kids = []
try:
    for i in range(1000):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
    print("unlimited", len(kids), 0)
except OSError as e:
    print("stopped", len(kids), e.errno)
for k in kids:
    os.kill(k, 9)
for k in kids:
    os.waitpid(k, 0)
`

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgroupFile reads a file of box id's cgroup (controller is v1's).
func cgroupFile(t *testing.T, id, controller, name string) string {
	t.Helper()
	p := filepath.Join("/sys/fs/cgroup", controller, "sbx", id, name)
	if cgroupV2() {
		p = filepath.Join("/sys/fs/cgroup/sbx", id, name)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func oomKills(t *testing.T, id string) int {
	file := "memory.oom_control"
	if cgroupV2() {
		file = "memory.events"
	}
	for _, line := range strings.Split(cgroupFile(t, id, "memory", file), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
			return mustAtoi(f[1])
		}
	}
	return -1
}

// TestBoxOutlivesStarter starts a box from a child process that exits, as
// sbx serve does when it restarts, and finds the box still serving.
func TestBoxOutlivesStarter(t *testing.T) {
	rt := newRuntime(t)
	b := prepare(t, rt)
	spec := b.spec(testLimits)
	arg, _ := json.Marshal(childArgs{Spec: spec, Sock: b.sock, Root: env.root})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(arg))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	st, err := rt.State(context.Background(), b.id)
	if err != nil || !st.Running {
		t.Fatalf("State after starter exited = %+v, %v", st, err)
	}
	if r := mustCall(t, b, "echo", "alive"); strings.TrimSpace(r.Output) != "alive" {
		t.Fatalf("box answered %+v", r)
	}
	// Not our child: the box's init was reparented away from its starter and
	// is not under this process either.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if ppid := statusField(string(status), "PPid"); ppid == strconv.Itoa(os.Getpid()) || ppid == strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("box init's parent is %s", ppid)
	}
	// A fresh Runtime over the same state dir finds it too.
	rt2, err := New(Options{Root: env.root})
	if err != nil {
		t.Fatal(err)
	}
	if st2, _ := rt2.State(context.Background(), b.id); st2 != st {
		t.Errorf("new Runtime sees %+v, want %+v", st2, st)
	}
}

type childArgs struct {
	Spec sandbox.BoxSpec
	Sock string
	Root string
}

func startChild(arg string) error {
	var a childArgs
	if err := json.Unmarshal([]byte(arg), &a); err != nil {
		return err
	}
	f, err := listen(a.Sock)
	if err != nil {
		return err
	}
	a.Spec.AgentListener = f
	rt, err := New(Options{Root: a.Root})
	if err != nil {
		return err
	}
	return rt.Start(context.Background(), a.Spec)
}

func TestPauseResume(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	b := start(t, rt, testLimits)
	mustCall(t, b, "true")
	if err := rt.Pause(ctx, b.id); err != nil {
		t.Fatal(err)
	}
	if st, err := rt.State(ctx, b.id); err != nil || !st.Running || !st.Paused {
		t.Fatalf("State after Pause = %+v, %v", st, err)
	}
	// A frozen init accepts nothing: the request queues in the backlog.
	done := make(chan result, 1)
	go func() {
		r, err := call(b, 30*time.Second, "echo", "thawed")
		if err != nil {
			r.Err = err.Error()
		}
		done <- r
	}()
	select {
	case r := <-done:
		t.Fatalf("frozen box answered: %+v", r)
	case <-time.After(time.Second):
	}
	if err := rt.Resume(ctx, b.id); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if strings.TrimSpace(r.Output) != "thawed" {
			t.Fatalf("after Resume: %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("box did not answer after Resume")
	}
	if st, err := rt.State(ctx, b.id); err != nil || !st.Running || st.Paused {
		t.Fatalf("State after Resume = %+v, %v", st, err)
	}
	// Destroy works on a frozen box too.
	if err := rt.Pause(ctx, b.id); err != nil {
		t.Fatal(err)
	}
	if err := rt.Destroy(ctx, b.id); err != nil {
		t.Fatalf("Destroy of paused box: %v", err)
	}
}

func TestDestroyAndUnknown(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	b := start(t, rt, testLimits)
	st, _ := rt.State(ctx, b.id)
	again := b.spec(testLimits)
	again.AgentListener = os.Stdin
	if err := rt.Start(ctx, again); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second Start of %s = %v, want ErrConflict", b.id, err)
	}
	if err := rt.Destroy(ctx, b.id); err != nil {
		t.Fatal(err)
	}
	if err := rt.Destroy(ctx, b.id); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	if got, err := rt.State(ctx, b.id); err != nil || got != (sandbox.BoxState{}) {
		t.Fatalf("State after Destroy = %+v, %v", got, err)
	}
	// The killed init may linger a moment as a zombie until the host's init
	// reaps it; it must not be alive.
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.Pid))
		if err != nil || strings.HasPrefix(statusField(string(status), "State"), "Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("init pid %d still alive after Destroy: %s", st.Pid, statusField(string(status), "State"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p := filepath.Join("/sys/fs/cgroup/pids/sbx", b.id)
	if cgroupV2() {
		p = filepath.Join("/sys/fs/cgroup/sbx", b.id)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s left after Destroy: %v", p, err)
	}

	unknown := newID()
	if got, err := rt.State(ctx, unknown); err != nil || got != (sandbox.BoxState{}) {
		t.Errorf("State(unknown) = %+v, %v", got, err)
	}
	if got, err := rt.State(ctx, "../../etc"); err != nil || got != (sandbox.BoxState{}) {
		t.Errorf("State(bad id) = %+v, %v", got, err)
	}
	if err := rt.Destroy(ctx, unknown); err != nil {
		t.Errorf("Destroy(unknown) = %v", err)
	}
	if err := rt.Pause(ctx, unknown); !errors.Is(err, sandbox.ErrBoxNotFound) {
		t.Errorf("Pause(unknown) = %v", err)
	}
	if err := rt.Resume(ctx, unknown); !errors.Is(err, sandbox.ErrBoxNotFound) {
		t.Errorf("Resume(unknown) = %v", err)
	}
}

// TestStartFailureCleansUp: a box runc cannot start leaves no state behind
// and its error says why.
func TestStartFailureCleansUp(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	b := prepare(t, rt)
	spec := b.spec(testLimits)
	spec.AgentPath = filepath.Join(b.dir, "no-such-agent")
	spec.AgentListener = os.Stdin
	err := rt.Start(ctx, spec)
	if err == nil {
		t.Fatal("Start with a missing agent succeeded")
	}
	if !strings.Contains(err.Error(), "no-such-agent") {
		t.Errorf("error does not name the cause: %v", err)
	}
	t.Logf("Start error: %v", err)
	if st, err := rt.State(ctx, b.id); err != nil || st.Exists {
		t.Errorf("State after failed Start = %+v, %v", st, err)
	}
}

// TestDeadBox: a box whose init died is reported as existing but not
// running, and Destroy cleans it up.
func TestDeadBox(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	b := start(t, rt, testLimits)
	st, _ := rt.State(ctx, b.id)
	if err := unix.Kill(st.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := rt.State(ctx, b.id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Exists && !st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("State after init died = %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := rt.Destroy(ctx, b.id); err != nil {
		t.Fatal(err)
	}
	if st, _ := rt.State(ctx, b.id); st.Exists {
		t.Fatalf("State after Destroy = %+v", st)
	}
}

// TestStartOverhead measures Start against `runc run --detach` of the same
// bundle and logs both; it fails only if the driver is far slower.
func TestStartOverhead(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	const n = 10
	var driver, raw []time.Duration
	for range n {
		b := prepare(t, rt)
		f, err := listen(b.sock)
		if err != nil {
			t.Fatal(err)
		}
		spec := b.spec(testLimits)
		spec.AgentListener = f
		t0 := time.Now()
		if err := rt.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		driver = append(driver, time.Since(t0))
		if err := rt.Destroy(ctx, b.id); err != nil {
			t.Fatal(err)
		}

		// The same bundle (config.json as Start wrote it), started by hand.
		id := newID()
		cmd := exec.Command(DefaultBinary, "--root", env.root, "run", "--detach", "--preserve-fds", "1", "--bundle", b.bundle, id)
		cmd.ExtraFiles = []*os.File{f}
		// A file, not a pipe: the detached box keeps runc's stdio open.
		logf, err := os.OpenFile(filepath.Join(b.bundle, "raw.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		t0 = time.Now()
		err = cmd.Run()
		logf.Close()
		if err != nil {
			out, _ := os.ReadFile(filepath.Join(b.bundle, "raw.log"))
			t.Fatalf("raw runc run: %v\n%s", err, out)
		}
		raw = append(raw, time.Since(t0))
		if err := rt.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	p := func(d []time.Duration, q float64) time.Duration {
		s := slices.Clone(d)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(q*float64(len(s)-1)+0.5)]
	}
	t.Logf("%-28s %3s %10s %10s", "operation", "n", "p50", "p99")
	t.Logf("%-28s %3d %10s %10s", "runc.Runtime.Start", n, p(driver, .5).Round(time.Microsecond), p(driver, .99).Round(time.Microsecond))
	t.Logf("%-28s %3d %10s %10s", "runc run --detach (raw)", n, p(raw, .5).Round(time.Microsecond), p(raw, .99).Round(time.Microsecond))
	if p(driver, .5) > 2*p(raw, .5)+50*time.Millisecond {
		t.Errorf("Start p50 %v is far above raw runc's %v", p(driver, .5), p(raw, .5))
	}
}
