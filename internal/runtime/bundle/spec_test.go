package bundle

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/sandbox"
)

func testSpec() sandbox.BoxSpec {
	return sandbox.BoxSpec{
		ID: "abc123", Rootfs: "/r", BundleDir: "/b", AgentPath: "/a", Hostname: "h",
		AgentListener: os.Stdin, Env: []string{"A=1"},
		Limits: sandbox.Limits{CPUs: 1.5, MemoryBytes: 1 << 30, Pids: 100},
	}
}

func TestBoxSpec(t *testing.T) {
	s, err := Spec(testSpec(), MaxNofile, Cgroups{})
	if err != nil {
		t.Fatal(err)
	}
	p := s.Process
	if !slices.Equal(p.Args, []string{agentapi.BinaryPath}) || p.Cwd != "/" || p.User.UID != 0 || !p.NoNewPrivileges || !slices.Equal(p.Env, []string{"A=1"}) {
		t.Errorf("process = %+v", p)
	}
	// Set-uid programs (sudo) work only where root in the box is an
	// unprivileged host uid.
	mapped := testSpec()
	mapped.IDMap = &sandbox.IDMap{HostID: 100000000, Size: 65536}
	if ms, err := Spec(mapped, MaxNofile, Cgroups{}); err != nil || ms.Process.NoNewPrivileges {
		t.Errorf("with an id map: no_new_privs %v, %v; want off", ms != nil && ms.Process.NoNewPrivileges, err)
	}
	for _, c := range []string{"CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_ADMIN"} {
		if slices.Contains(p.Capabilities.Bounding, c) || slices.Contains(p.Capabilities.Effective, c) || slices.Contains(p.Capabilities.Permitted, c) {
			t.Errorf("%s granted", c)
		}
	}
	if len(p.Capabilities.Bounding) != 11 || len(p.Capabilities.Inheritable) != 0 || len(p.Capabilities.Ambient) != 0 {
		t.Errorf("capabilities = %+v", p.Capabilities)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		if n.Path != "" {
			t.Errorf("namespace %s joins %s; every namespace must be new", n.Type, n.Path)
		}
		ns = append(ns, n.Type)
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace, specs.NetworkNamespace, specs.UTSNamespace, specs.IPCNamespace, specs.CgroupNamespace} {
		if !slices.Contains(ns, want) {
			t.Errorf("no %s namespace", want)
		}
	}
	if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") || !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") {
		t.Errorf("readonly %v masked %v", s.Linux.ReadonlyPaths, s.Linux.MaskedPaths)
	}
	sc := s.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) < 10 {
		t.Fatalf("seccomp = %+v", sc)
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 1<<30 || *r.Memory.Swap != 1<<30 || *r.Pids.Limit != 100 || *r.CPU.Period != 100000 || *r.CPU.Quota != 150000 {
		t.Errorf("resources = %+v %+v %+v", r.Memory, r.Pids, r.CPU)
	}
	if len(r.Devices) != 1 || r.Devices[0].Allow {
		t.Errorf("devices = %+v", r.Devices)
	}
	if s.Linux.CgroupsPath != "/sbx/abc123" || s.Hostname != "h" || s.Root.Path != "/r" || s.Root.Readonly {
		t.Errorf("spec = %+v %+v", s.Linux.CgroupsPath, s.Root)
	}
	var agent *specs.Mount
	for i := range s.Mounts {
		if s.Mounts[i].Destination == agentapi.BinaryPath {
			agent = &s.Mounts[i]
		}
	}
	if agent == nil || agent.Source != "/a" || !slices.Contains(agent.Options, "ro") || !slices.Contains(agent.Options, "nosuid") || !slices.Contains(agent.Options, "nodev") {
		t.Errorf("agent mount = %+v", agent)
	}

	noCPU := testSpec()
	noCPU.Limits.CPUs = 0
	if s, err := Spec(noCPU, MaxNofile, Cgroups{}); err != nil || s.Linux.Resources.CPU != nil {
		t.Errorf("CPUs=0: %v, %+v", err, s.Linux.Resources.CPU)
	}
}

func TestBoxSpecRequiresLimits(t *testing.T) {
	for _, l := range []sandbox.Limits{
		{CPUs: 1, MemoryBytes: 0, Pids: 10},
		{CPUs: 1, MemoryBytes: 1 << 20, Pids: 0},
		{CPUs: -1, MemoryBytes: 1 << 20, Pids: 10},
	} {
		s := testSpec()
		s.Limits = l
		if _, err := Spec(s, MaxNofile, Cgroups{}); err == nil {
			t.Errorf("limits %+v accepted", l)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, mut := range []func(*sandbox.BoxSpec){
		func(s *sandbox.BoxSpec) { s.ID = "../x" },
		func(s *sandbox.BoxSpec) { s.ID = "" },
		func(s *sandbox.BoxSpec) { s.ID = "ABC" },
		func(s *sandbox.BoxSpec) { s.Rootfs = "rel" },
		func(s *sandbox.BoxSpec) { s.AgentListener = nil },
	} {
		s := testSpec()
		mut(&s)
		if err := Validate(s); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Validate(%+v) = %v", s, err)
		}
	}
	if err := Validate(testSpec()); err != nil {
		t.Error(err)
	}
}

func TestEnsureMountpoint(t *testing.T) {
	outside := t.TempDir()
	for name, prep := range map[string]func(root string) error{
		"fresh": func(root string) error { return nil },
		"exists": func(root string) error {
			os.MkdirAll(filepath.Join(root, ".sbx"), 0o755)
			return os.WriteFile(filepath.Join(root, ".sbx/sbx-agent"), nil, 0o755)
		},
	} {
		root := t.TempDir()
		if err := prep(root); err != nil {
			t.Fatal(err)
		}
		if err := EnsureMountpoint(root, agentapi.BinaryPath); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if fi, err := os.Stat(filepath.Join(root, agentapi.BinaryPath)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: mount point %v, %v", name, fi, err)
		}
		if err := EnsureMountDir(root, "/.sbx/run"); err != nil {
			t.Errorf("%s: EnsureMountDir: %v", name, err)
		}
		if fi, err := os.Stat(filepath.Join(root, ".sbx/run")); err != nil || !fi.IsDir() {
			t.Errorf("%s: dir mount point %v, %v", name, fi, err)
		}
		if err := EnsureMountDir(root, agentapi.BinaryPath); err == nil {
			t.Errorf("%s: EnsureMountDir accepted a file", name)
		}
	}
	// A hostile rootfs: symlinks that would make the driver create files on
	// the host, absolute or relative, on the directory or on the file.
	for name, prep := range map[string]func(root string) error{
		"dir abs symlink": func(root string) error { return os.Symlink(outside, filepath.Join(root, ".sbx")) },
		"dir rel symlink": func(root string) error {
			rel, _ := filepath.Rel(root, outside)
			return os.Symlink(rel, filepath.Join(root, ".sbx"))
		},
		"file symlink": func(root string) error {
			os.Mkdir(filepath.Join(root, ".sbx"), 0o755)
			return os.Symlink(filepath.Join(outside, "sbx-agent"), filepath.Join(root, ".sbx/sbx-agent"))
		},
		"dir instead of file": func(root string) error { return os.MkdirAll(filepath.Join(root, ".sbx/sbx-agent"), 0o755) },
	} {
		root := t.TempDir()
		if err := prep(root); err != nil {
			t.Fatal(err)
		}
		if err := EnsureMountpoint(root, agentapi.BinaryPath); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if err := EnsureMountDir(root, "/.sbx/run"); err == nil && name != "dir instead of file" && name != "file symlink" {
			t.Errorf("%s: EnsureMountDir accepted", name)
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Fatalf("%s: created %v outside the rootfs", name, entries[0].Name())
		}
	}
}

// BenchmarkBoxSpec is a driver's own share of Start before the runtime runs:
// building the spec (seccomp profile included) and encoding it.
func BenchmarkBoxSpec(b *testing.B) {
	for b.Loop() {
		s, err := Spec(testSpec(), MaxNofile, Cgroups{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.MarshalIndent(s, "", "\t"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBoxSpecBackground: a background box gets the lowest CPU weight beside
// its quota; any other box leaves the weight to the kernel's default.
func TestBoxSpecBackground(t *testing.T) {
	bs := testSpec()
	s, err := Spec(bs, MaxNofile, Cgroups{})
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Linux.Resources.CPU; c == nil || c.Shares != nil || c.Quota == nil {
		t.Fatalf("foreground box: cpu = %+v", c)
	}
	bs.Background = true
	if s, err = Spec(bs, MaxNofile, Cgroups{}); err != nil {
		t.Fatal(err)
	}
	if c := s.Linux.Resources.CPU; c == nil || c.Shares == nil || *c.Shares != backgroundShares || c.Quota == nil || *c.Quota != 150000 {
		t.Fatalf("background box: cpu = %+v", c)
	}
	bs.Limits.CPUs = 0
	if s, err = Spec(bs, MaxNofile, Cgroups{}); err != nil {
		t.Fatal(err)
	}
	if c := s.Linux.Resources.CPU; c == nil || c.Shares == nil || *c.Shares != backgroundShares || c.Quota != nil {
		t.Fatalf("background box without a quota: cpu = %+v", c)
	}
}

func TestSpecVolumes(t *testing.T) {
	in := testSpec()
	in.Volumes = []sandbox.BoxMount{{Source: "/data/volumes/v/data", Destination: "/mnt/v"}}
	s, err := Spec(in, MaxNofile, Cgroups{})
	if err != nil {
		t.Fatal(err)
	}
	var got *specs.Mount
	for i := range s.Mounts {
		if s.Mounts[i].Destination == "/mnt/v" {
			got = &s.Mounts[i]
		}
	}
	if got == nil || got.Type != "bind" || got.Source != "/data/volumes/v/data" ||
		!slices.Contains(got.Options, "rw") || !slices.Contains(got.Options, "nosuid") || !slices.Contains(got.Options, "nodev") || slices.Contains(got.Options, "rbind") {
		t.Fatalf("volume mount = %+v", got)
	}
	for _, bad := range []sandbox.BoxMount{{Source: "rel", Destination: "/m"}, {Source: "/s", Destination: "m"}, {Source: "/s", Destination: "/"}} {
		in.Volumes = []sandbox.BoxMount{bad}
		if err := Validate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Validate with volume %+v: %v", bad, err)
		}
	}
}

// TestCgroupPaths: a lone server's boxes go under /sbx, a fleet node's
// under /sbx/nodes/<node>, so that nodes sharing a host never share one.
func TestCgroupPaths(t *testing.T) {
	for _, tc := range []struct {
		cg   Cgroups
		want string
	}{
		{Cgroups{}, "/sbx/abc123"},
		{NodeCgroups("n1"), "/sbx/nodes/n1/abc123"},
		{NodeCgroups("n2"), "/sbx/nodes/n2/abc123"},
	} {
		s, err := Spec(testSpec(), MaxNofile, tc.cg)
		if err != nil {
			t.Fatal(err)
		}
		if s.Linux.CgroupsPath != tc.want || tc.cg.Path("abc123") != tc.want {
			t.Errorf("%+v: cgroupsPath %s, Path %s; want %s", tc.cg, s.Linux.CgroupsPath, tc.cg.Path("abc123"), tc.want)
		}
	}
	for _, node := range []string{"n1", "node-2.example", "A_b"} {
		if !ValidNodeName(node) {
			t.Errorf("ValidNodeName(%q) = false", node)
		}
	}
	for _, node := range []string{"", ".", "..", "a/b", "../x", "a b", strings.Repeat("x", 65)} {
		if ValidNodeName(node) {
			t.Errorf("ValidNodeName(%q) = true", node)
		}
	}
}
