// Package harness boots the real thing for end-to-end tests: it builds the
// sbx and sbx-agent binaries once per test binary, starts `sbx serve` as a
// subprocess on a random loopback port with a temporary data directory, and
// hands tests a Go SDK client for it. Templates are cached across runs in one
// shared directory (SBX_TEST_TEMPLATES, default /var/cache/sbx-test/templates)
// so the base template is built once per machine. [S3] gives a test a fresh
// bucket on the machine's one test S3 server (SeaweedFS, started on first
// use and left running).
//
// Tests that use it need root and the runtimes installed by
// scripts/setup.sh; it fails (never skips) when they are missing.
//
// SBX_TEST_RUNTIME (runc or runsc; default runc) is the default runtime of
// the servers it starts (sbx serve --runtime), so that one suite proves
// both runtimes: scripts/test.sh runs tests/e2e once per runtime.
package harness

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
)

// T is the part of T the harness uses, so that benchmarks and tools
// outside `go test` can boot a server too.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

var _ T = testing.TB(nil)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// RepoRoot returns the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binaries builds sbx and sbx-agent (once per process) and returns the
// directory holding them.
func Binaries(t T) string {
	t.Helper()
	buildOnce.Do(func() {
		// SBX_TEST_BIN names prebuilt binaries (the cgroup v2 test VM
		// has no Go toolchain).
		if d := os.Getenv("SBX_TEST_BIN"); d != "" {
			binDir = d
			return
		}
		binDir, buildErr = os.MkdirTemp("", "sbx-bin-")
		if buildErr != nil {
			return
		}
		// Sandboxes run as unprivileged host ids and must reach the agent.
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		root := RepoRoot()
		for _, b := range []struct{ out, pkg string }{
			{"sbx", "./cmd/sbx"},
			{"sbx-agent", "./cmd/sbx-agent"},
		} {
			cmd := exec.Command("go", "build", "-tags", "osusergo,netgo", "-o", filepath.Join(binDir, b.out), b.pkg)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Require fails the test unless it runs as root with runc and runsc
// installed.
func Require(t T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("end-to-end tests need root (they start real sandboxes); run them as root")
	}
	for _, rt := range []string{"runc", "runsc"} {
		if _, err := os.Stat("/usr/local/lib/sbx/" + rt); err != nil {
			t.Fatalf("%s is not installed at /usr/local/lib/sbx/%s; run scripts/setup.sh", rt, rt)
		}
	}
	switch Runtime() {
	case "runc", "runsc":
	default:
		t.Fatalf("SBX_TEST_RUNTIME=%q: want runc or runsc", Runtime())
	}
}

// Runtime is the runtime the suite runs sandboxes on: SBX_TEST_RUNTIME, or
// runc.
func Runtime() string {
	if rt := os.Getenv("SBX_TEST_RUNTIME"); rt != "" {
		return rt
	}
	return "runc"
}

// TemplatesDir is the shared template cache.
func TemplatesDir() string {
	if d := os.Getenv("SBX_TEST_TEMPLATES"); d != "" {
		return d
	}
	return "/var/cache/sbx-test/templates"
}

// Server is a running `sbx serve`.
type Server struct {
	t       T
	URL     string
	Addr    string
	APIKey  string
	DataDir string
	// Bin is the directory with the sbx and sbx-agent binaries.
	Bin    string
	Client *client.Client
	// Args are extra flags given to sbx serve.
	Args []string
	// NetNS, when set, is the network namespace (a name under
	// /run/netns, see [Netns]) sbx serve runs in: only its network is
	// the namespace's, its files and mounts are the host's, so that a
	// restart in the namespace re-adopts the boxes of the last run.
	NetNS string
	// Subnet is the sandboxes' --subnet: a random /23 in 10.64.0.0/10
	// unless Args name one, so that servers running at once never share
	// addresses (see RandomSubnet).
	Subnet string

	cmd  *exec.Cmd
	ca   *CA // set by StartTLS
	done chan error
	logs *logBuffer
}

// Start starts sbx serve with extra flags args and stops it when the test
// ends, checking that it shut down cleanly.
func Start(t T, args ...string) *Server {
	t.Helper()
	return StartIn(t, "", args...)
}

// StartIn is Start with sbx serve in network namespace netns (none when
// empty); see [Netns].
func StartIn(t T, netns string, args ...string) *Server {
	t.Helper()
	Require(t)
	s := &Server{t: t, Bin: Binaries(t), DataDir: t.TempDir(), Args: args, APIKey: NewAPIKey(), NetNS: netns}
	// t.TempDir's directories are private (0700); sandboxes run as
	// unprivileged host ids and must be able to reach their rootfs below.
	for _, d := range []string{s.DataDir, filepath.Dir(s.DataDir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	s.start()
	t.Cleanup(func() {
		if f, ok := t.(interface{ Failed() bool }); ok && f.Failed() {
			t.Logf("sbx serve's log (last 150 lines):\n%s", s.logs.tail(150))
		}
		if s.cmd != nil {
			s.Stop()
		}
		s.killAll()
		s.sweep()
	})
	return s
}

// NewAPIKey returns a random key of the form the e2b SDKs accept.
func NewAPIKey() string {
	b := make([]byte, 20)
	rand.Read(b)
	return "e2b_" + hex.EncodeToString(b)
}

func (s *Server) start() {
	t := s.t
	t.Helper()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", s.DataDir, "--templates-dir", TemplatesDir(), "--log-level", "debug", "--runtime", Runtime()}, s.Args...)
	if v, ok := flagValue(s.Args, "--subnet"); ok {
		s.Subnet = v
	} else {
		if s.Subnet == "" {
			s.Subnet = RandomSubnet(23)
		}
		args = append(args, "--subnet", s.Subnet)
	}
	if _, ok := flagValue(s.Args, "--warm-pool"); !ok {
		// No warm pool unless a test asks for one: most tests count what
		// their sandboxes use, and a pool's boxes would be in the count.
		args = append(args, "--warm-pool", "0")
	}
	// No rate limits unless a test asks for them: tests and benchmarks
	// send bursts (a hundred creates at once) that measure other things.
	for _, f := range []string{"--rate-limit-rps", "--create-rate-limit"} {
		if _, ok := flagValue(s.Args, f); !ok {
			args = append(args, f, "0")
		}
	}
	if s.Addr != "" {
		args[2] = s.Addr // a restart keeps the address clients know
	}
	cmd := exec.Command(filepath.Join(s.Bin, "sbx"), args...)
	if s.NetNS != "" {
		// nsenter joins the network namespace and execs sbx (same
		// pid: signals reach it), leaving the mount namespace alone.
		cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + s.NetNS, "--", filepath.Join(s.Bin, "sbx")}, args...)...)
	}
	cmd.Env = append(os.Environ(), "SBX_API_KEY="+s.APIKey)
	// Its own process group, so a test's Ctrl-C does not reach it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if s.logs == nil {
		s.logs = &logBuffer{}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sbx serve: %v", err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logs.add(line)
			if i := strings.Index(line, "msg=ready addr="); i >= 0 {
				select {
				case ready <- strings.Fields(line[i+len("msg=ready addr="):])[0]:
				default:
				}
			}
		}
	}()
	s.cmd = cmd
	s.done = make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()
	select {
	case addr := <-ready:
		s.Addr = addr
	case err := <-s.done:
		t.Fatalf("sbx serve exited before ready: %v\n%s", err, s.logs.String())
	case <-time.After(15 * time.Minute): // a cold base-template build
		t.Fatalf("sbx serve not ready after 15 minutes\n%s", s.logs.String())
	}
	s.URL = "http://" + s.Addr
	s.Client = client.New(s.URL, s.APIKey)
	if s.ca != nil {
		s.useTLS()
	}
}

// flagValue returns the value of flag name in args ("--name v" or
// "--name=v").
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// RandomSubnet returns a random 10.64.0.0/10 prefix of the given length
// (16 to 29) that no route of the host overlaps. Several sbx serve (tests,
// benchmarks, other developers' runs) share the host; each needs its own.
func RandomSubnet(bits int) string {
	routes := hostRoutes()
	for {
		var b [4]byte
		rand.Read(b[:])
		v := uint32(10)<<24 | uint32(64+b[0]%128)<<16 | uint32(b[1])<<8 | uint32(b[2])
		v &^= 1<<(32-bits) - 1
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
		free := true
		for _, r := range routes {
			if r.Overlaps(p) {
				free = false
			}
		}
		if free {
			return p.String()
		}
	}
}

// hostRoutes returns the destinations of the host's IPv4 routes, the
// default route excepted.
func hostRoutes() []netip.Prefix {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil || mask == 0 {
			continue
		}
		// /proc/net/route prints addresses in host (little-endian) order.
		d := uint32(dst)
		a := netip.AddrFrom4([4]byte{byte(d), byte(d >> 8), byte(d >> 16), byte(d >> 24)})
		out = append(out, netip.PrefixFrom(a, bits.OnesCount32(uint32(mask))))
	}
	return out
}

// Stop sends SIGTERM and fails the test unless the server exits cleanly
// within 20 seconds.
func (s *Server) Stop() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("sbx serve did not exit cleanly: %v\n%s", err, s.logs.String())
		}
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		s.t.Errorf("sbx serve did not stop within 20s of SIGTERM\n%s", s.logs.String())
	}
	s.cmd = nil
}

// Crash kills the server with SIGKILL, as a crash would.
func (s *Server) Crash() {
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart stops the server and starts it again on the same address and data
// directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// StartAgain starts a server stopped with Stop or Crash.
func (s *Server) StartAgain() { s.start() }

// Pid returns the server's process id (0 when stopped).
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Logs returns everything the server has logged.
func (s *Server) Logs() string { return s.logs.String() }

// Pooled is how many sandboxes the server's warm pool holds, as its log
// tells (at debug level, which the harness sets): those made ready less
// those taken by creates.
func (s *Server) Pooled() int {
	logs := s.Logs()
	return strings.Count(logs, `msg="warm sandbox ready"`) - strings.Count(logs, "warm=true")
}

// killAll kills every sandbox the test left behind, so that none outlives
// its data directory.
func (s *Server) killAll() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s.cmd == nil {
		s.start()
		defer s.Stop()
	}
	list, err := s.Client.ListSandboxes(ctx, nil)
	if err != nil {
		s.t.Logf("cleanup: list sandboxes: %v", err)
		return
	}
	for _, sb := range list {
		if err := s.Client.KillSandbox(ctx, sb.SandboxID); err != nil {
			s.t.Logf("cleanup: kill %s: %v", sb.SandboxID, err)
		}
	}
	// Volumes are mounted on the host under the data directory: destroyed
	// here, they are unmounted before it is removed.
	vols, err := s.Client.ListVolumes(ctx)
	if err != nil {
		s.t.Logf("cleanup: list volumes: %v", err)
		return
	}
	for _, v := range vols {
		if err := s.Client.DestroyVolume(ctx, v.ID); err != nil {
			s.t.Logf("cleanup: destroy volume %s: %v", v.ID, err)
		}
	}
}

// CLI runs the sbx CLI against the server and returns its stdout, stderr and
// exit code.
func (s *Server) CLI(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.Bin, "sbx"), args...)
	cmd.Env = append(os.Environ(), "SBX_URL="+s.URL, "SBX_API_KEY="+s.APIKey)
	cmd.Stdin = stdin
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			code = -1
			errb.WriteString(err.Error())
		}
	}
	return out.String(), errb.String(), code
}

type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) add(l string) {
	b.mu.Lock()
	b.lines = append(b.lines, l)
	b.mu.Unlock()
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.lines
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
