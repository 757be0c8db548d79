package bundle

import (
	"fmt"
	"math"
	"runtime"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// capabilities is the box's capability set: Docker's default minus
//   - CAP_NET_RAW: raw and packet sockets let code in the box forge packets
//     (ARP/ICMP spoofing once the box has a network) and have been a
//     recurring kernel attack surface;
//   - CAP_MKNOD: device nodes are useless behind the device cgroup and only
//     widen what a cgroup bug would expose;
//   - CAP_AUDIT_WRITE: the box has no business writing to the host's audit
//     log (log spoofing/flooding).
//
// What remains lets root in the box manage its own files and users (chown,
// setuid to "user", bind low ports, chroot) and nothing that reaches past its
// namespaces: no SYS_ADMIN (mount, namespaces), SYS_PTRACE, SYS_MODULE,
// NET_ADMIN, SYS_TIME, and so on.
var capabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
}

// MaskedPaths hide host information and kernel interfaces under /proc and
// /sys that leak host state (kcore, keys, timers, scheduler debug) or expose
// firmware; exactly runc's default list (`runc spec`).
var MaskedPaths = []string{
	"/proc/acpi",
	"/proc/asound",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/proc/sched_debug",
	"/sys/firmware",
	"/proc/scsi",
}

// readonlyPaths are kernel knobs that are global to the host, not namespaced:
// writing them from a box (even as root in it) would reconfigure the host.
// runc's default list, which includes /proc/sys: its sysctls are mostly
// host-wide (vm.*, kernel.*), and the few namespaced ones are not ours to let
// a box change either.
var readonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// cpuPeriod is the CFS period; the quota is CPUs times it.
const cpuPeriod = 100000

// MaxNofile is the box's RLIMIT_NOFILE at most: generous (language servers
// and node open many files) but bounded, and no higher than the kernel's
// default fs.nr_open. The runtime sets it with the starter's privileges; a starter
// without CAP_SYS_RESOURCE (some sandboxed hosts) cannot raise a hard limit,
// and then boxes get the starter's own hard limit (see NofileLimit).
const MaxNofile = 1048576

// oomScoreAdj makes box processes the host OOM killer's first choice when
// the host itself runs out of memory, so sbx and the host's services survive
// a box that slips past its own limit. Inside the box, the memory cgroup
// limit decides first.
const oomScoreAdj = 500

// Spec returns the OCI runtime spec of box s. The threat behind each
// choice is written next to it; see also the variables above.
// nofile is the box's RLIMIT_NOFILE (soft and hard).
func Spec(s sandbox.BoxSpec, nofile uint64, cg Cgroups) (*specs.Spec, error) {
	if s.Limits.MemoryBytes <= 0 || s.Limits.Pids <= 0 || s.Limits.CPUs < 0 ||
		math.IsNaN(s.Limits.CPUs) || math.IsInf(s.Limits.CPUs, 0) {
		// Fail closed: a box without memory and pids limits can take the host
		// down (memory exhaustion, fork bomb).
		return nil, fmt.Errorf("limits %+v: memory and pids limits are required", s.Limits)
	}
	memory := s.Limits.MemoryBytes
	swap := s.Limits.MemoryBytes // memory+swap == memory: no swap, so the limit is real
	pids := s.Limits.Pids
	oom := oomScoreAdj

	spec := &specs.Spec{
		Version:  specs.Version,
		Hostname: s.Hostname,
		Root: &specs.Root{
			Path: s.Rootfs,
			// Writable: the rootfs is the box's own overlay upper layer; the
			// template below it is never written.
			Readonly: false,
		},
		Process: &specs.Process{
			Args: []string{agentapi.BinaryPath},
			Env:  s.Env,
			Cwd:  "/",
			// The agent runs as root in the box: it must start commands as
			// any user. Root in the box is contained by the user namespace
			// (an unprivileged host uid), the reduced capabilities and
			// seccomp below.
			User: specs.User{UID: 0, GID: 0},
			// Set-uid programs work, as on E2B, whose base lets its user
			// sudo: the box's user may become the box's root, who is what
			// any API caller already runs as (user "root"). What that
			// grants stops at the bounding set below, which no exec can
			// raise, so a set-uid binary or a file capability in the
			// (untrusted) rootfs yields root in the box and nothing more.
			// The host side of the threat, a host user running a set-uid
			// file the box made, is closed where the box's files live
			// (package sandbox: its directories admit root and the box's
			// own ids only). Without an id map root in the box is the
			// host's root, and no_new_privs stays (below).
			NoNewPrivileges: false,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  capabilities,
				Effective: capabilities,
				Permitted: capabilities,
				// Empty: exec'ed programs of non-root users gain nothing.
				Inheritable: []string{},
				Ambient:     []string{},
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile},
			},
			OOMScoreAdj: &oom,
		},
		Mounts: []specs.Mount{
			// The standard container mounts, as `runc spec` has them. proc
			// belongs to the box's pid namespace, so it shows only the box's
			// processes; masked/readonly paths below cover its host-wide files.
			{Destination: "/proc", Type: "proc", Source: "proc"},
			// A private /dev: only the device nodes runc creates (null, zero,
			// full, random, urandom, tty, ptmx), never the host's disks.
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			// newinstance: the box's ptys are its own, not the host's.
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			// Read-only: /sys carries host-wide knobs; the box may read its
			// own network devices (sysfs follows the box's netns).
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			// Read-only, and scoped to the box by the cgroup namespace: the box
			// sees its own limits but cannot raise them or escape its cgroup.
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			// The agent binary, read-only so a compromised box cannot replace
			// the init of this or (the file being shared) any other box;
			// nosuid/nodev so the mount grants nothing beyond the binary.
			{Destination: agentapi.BinaryPath, Type: "bind", Source: s.AgentPath, Options: []string{"bind", "ro", "nosuid", "nodev"}},
		},
		Linux: &specs.Linux{
			// User namespace: added below when the caller maps ids (sbx
			// serve always does), so that uid 0 in the box is an
			// unprivileged host uid.
			Namespaces: []specs.LinuxNamespace{
				// pid: the box sees and signals only its own processes.
				{Type: specs.PIDNamespace},
				// mount: the box's mounts are its own; it cannot see or change
				// the host's mount table.
				{Type: specs.MountNamespace},
				// network: a new, empty namespace holding only loopback, so the
				// box reaches neither the host's services (including sbx's own
				// API on 127.0.0.1) nor other boxes. Egress, if any, is added
				// by the network layer, not here: when the Manager prepared a
				// namespace with a veth (BoxSpec.NetNS), the box joins it.
				{Type: specs.NetworkNamespace, Path: s.NetNS},
				// uts: the box's hostname is its own (spec.Hostname).
				{Type: specs.UTSNamespace},
				// ipc: no SysV/POSIX IPC shared with the host or other boxes.
				{Type: specs.IPCNamespace},
				// cgroup: /proc/self/cgroup and /sys/fs/cgroup show the box's
				// own cgroup as root, hiding the host's hierarchy.
				{Type: specs.CgroupNamespace},
			},
			// cgroupfs path (not a systemd slice): runc creates it under every
			// v1 controller, or as one directory on v2.
			CgroupsPath: cg.Path(s.ID),
			Resources: &specs.LinuxResources{
				// Deny every device; runc then allows only its defaults (null,
				// zero, full, random, urandom, tty, ptmx, pts): no host disks,
				// no /dev/kmsg, no fuse.
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				// Memory exhaustion: the box's processes are OOM-killed inside
				// the box at its limit, and without swap (limit == memory+swap)
				// the box cannot push the host into swapping. On v2 runc turns
				// swap into memory.swap.max = swap - limit = 0.
				Memory: &specs.LinuxMemory{Limit: &memory, Swap: &swap},
				// Fork bombs: tasks (processes and threads) are capped.
				Pids: &specs.LinuxPids{Limit: &pids},
			},
			// The host's mounts made after the box starts (other boxes'
			// rootfs overlays, for one) must not propagate into it.
			RootfsPropagation: "rprivate",
			MaskedPaths:       MaskedPaths,
			ReadonlyPaths:     readonlyPaths,
		},
	}
	for _, v := range s.Volumes {
		// A volume, shared with other boxes and the host's content API:
		// read-write; nosuid and nodev so that nothing another box wrote
		// there grants privileges or reaches devices in this one. Not
		// rbind: the volume's own directory only.
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: v.Destination, Type: "bind", Source: v.Source,
			Options: []string{"bind", "rw", "nosuid", "nodev"},
		})
	}
	if m := s.IDMap; m != nil {
		// Escape containment: root in the box is host uid m.HostID, which
		// owns nothing on the host. A process that breaks out of every
		// other layer (a kernel or runc bug) lands as an unprivileged
		// user, and the box's capabilities count only inside its own
		// namespaces.
		if m.Size == 0 || uint64(m.HostID)+uint64(m.Size) > 1<<32-1 || m.HostID == 0 {
			return nil, fmt.Errorf("bad id map %+v", *m)
		}
		// With UserNS, the network layer made the user namespace (with
		// this same mapping) so that it owns the box's network namespace.
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: s.UserNS})
		spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.HostID, Size: m.Size}}
		spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.HostID, Size: m.Size}}
	} else {
		// Root in the box is the host's root: no set-uid program may
		// make anyone that.
		spec.Process.NoNewPrivileges = true
	}
	if s.Limits.CPUs > 0 {
		// CPU starvation of the host and other boxes: a CFS quota of CPUs
		// cores per period.
		period := uint64(cpuPeriod)
		quota := int64(math.Ceil(s.Limits.CPUs * cpuPeriod))
		if quota < 1000 {
			quota = 1000 // the kernel's minimum quota (1ms)
		}
		spec.Linux.Resources.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if s.Background {
		// The lowest weight (cpu.shares 2 on v1, which runc writes as
		// cpu.weight 1 on v2) until Foreground gives it the default.
		if spec.Linux.Resources.CPU == nil {
			spec.Linux.Resources.CPU = &specs.LinuxCPU{}
		}
		shares := uint64(backgroundShares)
		spec.Linux.Resources.CPU.Shares = &shares
	}

	// Kernel attack surface: Docker's default seccomp profile, evaluated for
	// this spec's capabilities (syscalls that need a capability we dropped,
	// such as mount or unshare of new namespaces, stay blocked). Every
	// syscall it does not list fails with EPERM.
	sc, err := seccomp.GetDefaultProfile(spec)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	if sc == nil || sc.DefaultAction == specs.ActAllow {
		return nil, fmt.Errorf("seccomp profile is empty or allows by default")
	}
	// 32-bit syscall entry points (x86 int 0x80, x32) are a classic
	// kernel attack surface that 64-bit sandboxes never need: allow only
	// the host's native architecture. This also makes the filter a third
	// of the size Docker's three-architecture profile compiles to, which
	// is measurable on every sandbox start.
	if native, ok := nativeArch[runtime.GOARCH]; ok {
		sc.Architectures = []specs.Arch{native}
	}
	spec.Linux.Seccomp = sc
	return spec, nil
}

// nativeArch is the seccomp architecture of each GOARCH sbx runs on.
var nativeArch = map[string]specs.Arch{
	"amd64": specs.ArchX86_64,
	"arm64": specs.ArchAARCH64,
}
