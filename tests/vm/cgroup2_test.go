package vm

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbxdev/sbx/tests/harness"
)

// guestTests are the test binaries (package, -test.run pattern) run inside
// the cgroup v2 guest: the runc driver's box tests (limits, OOM, pids,
// freeze, teardown of cgroups) and the end-to-end suites that create real
// sandboxes through sbx serve (lifecycle, processes, restart survival, the
// escape suite with its fork and memory bombs).
//
// The escape suite's fork and memory bombs are left to the runc driver's
// PidsLimit and MemoryLimit tests here: under TCG a sandbox full of spinning
// forks slows the whole guest past the suite's deadlines.
var guestTests = []struct{ env, pkg, name, run, skip string }{
	{"", "./internal/runtime/runc", "runc.test", ".", ""},
	//
	// TestEscapeIdentity is left out: its relying party runs in a network
	// namespace made with ip(8), which the guest (the base template) lacks,
	// and it proves nothing about cgroups.
	{"", "./tests/e2e", "e2e.test", "TestSandboxLifecycle|TestProcesses|TestRestartSurvival|TestEscape($|VolumeSymlinks$|TemplateSetuid$|SandboxSetuid$|PortsOwnSandbox$)|TestPauseResume$", "TestEscape/(fork_bomb|pids_exhausted|memory_bomb)"},
	// On runsc, one test that creates, runs commands in, and re-adopts
	// sandboxes: gVisor under TCG is slow enough that the timing-bound
	// assertions elsewhere (endAt within a second, PTY resize before the
	// next command) do not hold.
	{"SBX_TEST_RUNTIME=runsc", "./tests/e2e", "e2e.test", "TestRestartSurvival", ""},
}

// modules the guest loads (with their dependencies): overlayfs for sandbox
// roots, loop and ext4 for per-sandbox disk quotas, veth and nftables for
// sandbox networks (crc32c first: libcrc32c asks for it at load time, and
// the guest has no modprobe to answer).
var modules = []string{"overlay", "loop", "ext4", "crc32c_generic", "veth", "nf_tables", "nft_ct", "nft_nat",
	"nft_masq", "nft_redir", "nft_chain_nat", "nft_reject_inet", "nft_fib_inet", "nf_conntrack_netlink"}

// TestCgroupV2 runs sbx's box and end-to-end tests on a pure cgroup v2 host:
// a QEMU guest booted from an initramfs made of the base template, whose
// init mounts only cgroup2. The host here is cgroup v1 (hybrid); this is what
// proves the v2 code paths (memory.max, pids.max, cpu.max, cgroup.freeze,
// memory.events) on every CI run.
func TestCgroupV2(t *testing.T) {
	harness.Require(t)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		t.Skip("this host is cgroup v2: every other test already runs on cgroup v2")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 is missing: run scripts/setup.sh")
	}
	kernel := filepath.Join(KernelDir, "vmlinuz")
	ver, err := os.ReadFile(filepath.Join(KernelDir, "version"))
	if err != nil {
		t.Fatalf("the test VM kernel is missing (%v): run scripts/setup.sh", err)
	}
	modDir := filepath.Join(KernelDir, "lib", "modules", strings.TrimSpace(string(ver)))
	base := filepath.Join(harness.TemplatesDir(), "base")
	if _, err := os.Stat(filepath.Join(base, "meta.json")); err != nil {
		// Built by any server start; the e2e and template tests do it too.
		harness.Start(t).Stop()
	}

	tmp := t.TempDir()
	if d := os.Getenv("SBX_VM_WORKDIR"); d != "" {
		tmp = d // kept after the test, to boot the guest by hand
	}
	bin := harness.Binaries(t)
	root := harness.RepoRoot()
	gobuild := func(out string, args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	gobuild("", "build", "-o", filepath.Join(tmp, "init"), "./tests/vm/init")
	gobuild("", "build", "-o", filepath.Join(tmp, "boxinit"), "./internal/runtime/runc/testdata/boxinit")
	var run strings.Builder
	if sc := os.Getenv("SBX_VM_SCRIPT"); sc != "" {
		// A script of one's own, run first in the guest (for debugging).
		b, err := os.ReadFile(sc)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(tmp, "script.sh"), b, 0o755)
		run.WriteString("/bin/bash /vm/script.sh\n")
	}
	built := map[string]bool{}
	for _, g := range guestTests {
		if !built[g.name] {
			gobuild("", "test", "-c", "-o", filepath.Join(tmp, g.name), g.pkg)
			built[g.name] = true
		}
		fmt.Fprintf(&run, "%s /vm/%s -test.v -test.count=1 -test.timeout=20m -test.run %s", g.env, g.name, g.run)
		if g.skip != "" {
			fmt.Fprintf(&run, " -test.skip %s", g.skip)
		}
		run.WriteString("\n")
	}
	// Every netfilter module too: nftables asks for the ones it needs at
	// run time (request_module), which the guest cannot answer, having no
	// modprobe.
	all := append([]string(nil), modules...)
	for _, d := range []string{"net/netfilter", "net/ipv4/netfilter", "net/ipv6/netfilter"} {
		ents, _ := os.ReadDir(filepath.Join(modDir, "kernel", d))
		for _, e := range ents {
			if n, ok := strings.CutSuffix(e.Name(), ".ko"); ok {
				all = append(all, n)
			}
		}
	}
	mods, err := moduleOrder(modDir, all)
	if err != nil {
		t.Fatal(err)
	}

	// The initramfs: the template's rootfs is the guest's root (init binds
	// it back where the template cache expects it), plus sbx, runc, the
	// test binaries and the kernel modules.
	initrd := filepath.Join(tmp, "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	c := newCPIO(bw)
	c.tree(filepath.Join(base, "rootfs"), "/")
	c.file("/init", filepath.Join(tmp, "init"), 0o755)
	for _, f := range []string{"runc", "runsc", "runsc.version"} {
		c.file("/usr/local/lib/sbx/"+f, "/usr/local/lib/sbx/"+f, 0o755)
	}
	for _, b := range []string{"sbx", "sbx-agent"} {
		c.file("/vm/bin/"+b, filepath.Join(bin, b), 0o755)
	}
	c.file("/vm/bin/boxinit", filepath.Join(tmp, "boxinit"), 0o755)
	for name := range built {
		c.file("/vm/"+name, filepath.Join(tmp, name), 0o755)
	}
	var modList []string
	for _, m := range mods {
		dst := "/vm/modules.d/" + filepath.Base(m)
		c.file(dst, m, 0o644)
		modList = append(modList, dst)
	}
	c.bytes("/vm/modules", 0o644, []byte(strings.Join(modList, "\n")+"\n"))
	if _, err := os.Stat(filepath.Join(tmp, "script.sh")); err == nil {
		c.file("/vm/script.sh", filepath.Join(tmp, "script.sh"), 0o755)
	}
	c.bytes("/vm/run", 0o644, []byte(run.String()))
	// The guest has no network of its own; sbx's DNS forwarder needs an
	// upstream to name (the tests answer DNS themselves).
	c.bytes("/etc/resolv.conf", 0o644, []byte("nameserver 192.0.2.53\n"))
	tplRoot := filepath.Join(base, "rootfs")
	c.dir(tplRoot, 0o755, 0, 0)
	c.file(filepath.Join(base, "meta.json"), filepath.Join(base, "meta.json"), 0o644)
	c.bytes("/vm/template-rootfs", 0o644, []byte(tplRoot+"\n"))
	if err := c.close(); err != nil {
		t.Fatalf("write initramfs: %v", err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	t.Logf("initramfs ready; booting the guest")
	if os.Getenv("SBX_VM_NOBOOT") != "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-M", "pc", "-cpu", "max", "-smp", "2", "-m", "4096",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", kernel, "-initrd", initrd,
		// pc, not microvm: its HPET lets the guest calibrate its clock
		// under TCG on a busy host, where microvm's PIT calibration hangs.
		// panic=-1: a guest panic reboots, which ends qemu (-no-reboot).
		"-append", "console=ttyS0 quiet panic=-1 rdinit=/init")
	// The guest must not outlive a test binary that times out or panics.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var results []string // exit codes, in the order of guestTests
	var log bytes.Buffer
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		log.WriteString(line + "\n")
		if testing.Verbose() {
			t.Log(line)
		}
		if rest, ok := strings.CutPrefix(line, "SBX-VM-RESULT "); ok {
			if fs := strings.Fields(rest); len(fs) >= 2 {
				results = append(results, fs[1])
			}
		}
	}
	cmd.Wait()
	t.Logf("guest ran for %s", time.Since(t0).Round(time.Second))
	if ctx.Err() != nil {
		t.Fatalf("the guest did not finish in time; its console:\n%s", tail(log.String(), 200))
	}
	if !strings.Contains(log.String(), "cgroup2 at /sys/fs/cgroup") {
		t.Fatalf("the guest did not come up; its console:\n%s", tail(log.String(), 200))
	}
	if os.Getenv("SBX_VM_SCRIPT") != "" {
		results = results[1:]
	}
	for i, g := range guestTests {
		switch {
		case i >= len(results):
			t.Errorf("%s %s did not report; console:\n%s", g.env, g.name, tail(log.String(), 200))
		case results[i] != "0":
			t.Errorf("%s %s failed on cgroup v2 (exit %s); console:\n%s", g.env, g.name, results[i], tail(log.String(), 300))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// moduleOrder returns the .ko paths for names and everything they depend on,
// dependencies first, reading each module's .modinfo "depends=" (the
// unpacked kernel package has no modules.dep).
func moduleOrder(modDir string, names []string) ([]string, error) {
	paths := map[string]string{}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			paths[strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")] = p
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	var visit func(string) error
	visit = func(name string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] {
			return nil
		}
		seen[name] = true
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("kernel module %s not found under %s", name, modDir)
		}
		deps, err := moduleDeps(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func moduleDeps(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	b, err := io.ReadAll(sec.Open())
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
