// Package runsc runs sandboxes under gVisor: each box's processes talk to
// runsc's user-space kernel (the Sentry), not to the host's, so a kernel bug
// reachable from the box is a bug in a sandboxed Go program rather than a
// host compromise. It satisfies sandbox.Runtime and sandbox.Checkpointer.
//
// # Overview
//
// Each box is an OCI bundle built by package bundle, exactly as for runc
// (same namespaces, capabilities, masked paths, limits, id mapping, seccomp
// profile), adjusted where gVisor differs (see boxSpec), and started with
// `runsc run --detach`: the sandbox process is reparented to the host's
// init, so boxes outlive sbx serve, and runsc's state directory
// (Options.Root) is what lets a new Runtime find them again.
//
// # The agent's socket
//
// runc hands the agent its listening socket as fd 3. gVisor cannot: a
// donated host socket becomes a connected-socket endpoint in the Sentry and
// accept(2) on it fails with EINVAL. Instead the box's socket directory
// (sandbox.BoxSpec.AgentSocket's directory, private to the box) is
// bind-mounted at /.sbx/run and runsc runs with --host-uds=create, which lets
// a socket bound inside the box under a bind mount be a real host socket:
// the agent listens on /.sbx/run/agent.sock and the host connects to the
// same file. --host-uds=create does not let the box connect to host sockets
// (that is "open"), so it gains no reach into the host; and the Manager
// dials the file without following symlinks, so the box cannot point the
// server elsewhere.
//
// # Checkpoints
//
// A socket bound through --host-uds is host state the Sentry cannot save
// ("Cannot save endpoint with bound host socket"). So, before a checkpoint,
// the driver asks the agent to let go of it (SIGUSR1: close the listener and
// every connection, then write /.sbx/run/quiesced); after a restore, or
// after a checkpoint that leaves the box running, the agent reads
// /.sbx/run/agent.json (the restored box's new configuration: its access
// token and sandbox id change when a snapshot becomes a new sandbox) and
// listens again. It wakes by itself: before writing the marker it opens
// gVisor's /proc/gvisor/checkpoint, whose read returns when the checkpoint
// that follows is over (in the box it was taken of, and in every box
// restored from its image), and says so in the marker; the image records
// it (agent-wakes). An agent that did not (an image of an older sbx), or
// that has not listened wakeGrace after a restore, is sent SIGUSR2, which
// wakes it too. Restore returns once the new socket exists; the Manager then
// awaits /health through it. Clients' open connections to the agent end at
// a checkpoint; the processes in the box keep running.
//
// # What gVisor gives instead
//
//   - User namespace: runsc honours the spec's uid/gid mappings (the gofer
//     maps file ownership, so template files owned by shifted host ids
//     appear with their in-box ids), and the Sentry itself runs in an empty
//     user namespace as an unprivileged user. Root in the box is root of
//     the Sentry's kernel only.
//   - Seccomp: the box's syscalls never reach the host; the Sentry serves
//     them, and the Sentry and the gofer run under gVisor's own host seccomp
//     filters. Docker's profile is not loaded into the Sentry (see boxSpec).
//   - cgroups: runsc places the sandbox's host processes (Sentry and gofer)
//     in the spec's cgroup /sbx/<id> (v1 or v2, like runc), so the memory,
//     CPU and pids limits bound the whole box; inside, sbx's patched
//     Sentry enforces the box's pids limit on its tasks (PidsAnnotation;
//     New refuses a runsc without the patch). The CPU quota is written to the cgroup
//     once runsc has started or restored the box (see launch): that work
//     is not held to the box's quota.
//   - Network: with no BoxSpec.NetNS the box gets --network=none (a
//     loopback-only netstack); with one, runsc joins that namespace and its
//     netstack takes over the namespace's interfaces (--network=sandbox).
//   - Filesystem: --overlay2=none, so the box writes straight through the
//     gofer to the rootfs the Manager assembled (its disk quota, its files
//     visible to /files and snapshots), not to an in-memory overlay; /tmp
//     too is the rootfs's own (runsc would otherwise mount a tmpfs there).
//
// # Usage
//
//	rt, err := runsc.New(runsc.Options{Root: "/var/lib/sbx/runsc", Logger: logger})
//	err = rt.Start(ctx, sandbox.BoxSpec{...})
//	err = rt.Checkpoint(ctx, id, dir, false)
//	err = rt.Restore(ctx, spec, dir)
package runsc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/atomicfile"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/runtime/bundle"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// DefaultBinary is where scripts/setup.sh installs runsc.
const DefaultBinary = "/usr/local/lib/sbx/runsc"

// PidsAnnotation is the OCI annotation that gives a box its task limit
// (BoxSpec.Limits.Pids) in sbx's patched runsc; see boxSpec.
const PidsAnnotation = "dev.sbx.pids.max"

// versionMark is in the version of every runsc built by
// scripts/build-runsc.sh (VERSION+sbxN): an unpatched runsc would ignore
// PidsAnnotation and leave boxes without a pids limit.
const versionMark = "+sbx"

// DefaultPlatform is gVisor's platform: systrap needs no KVM.
const DefaultPlatform = "systrap"

// DefaultSharedRoot is runsc's shared root directory when
// Options.SharedRoot is empty.
const DefaultSharedRoot = "/run/sbx/runsc"

// Options configure a Runtime.
type Options struct {
	// Binary is the runsc executable (DefaultBinary if empty). It must be
	// statically linked (scripts/setup.sh builds it so).
	Binary string
	// Root is runsc's state directory (`runsc --root`). Required: boxes
	// are found again through it after a restart.
	Root string
	// Platform is gVisor's platform (DefaultPlatform if empty).
	Platform string
	// SharedRoot is runsc's --shared-root, shared by every sbx serve on the
	// host (DefaultSharedRoot if empty): runsc pins an empty network
	// namespace there, a bind mount, which must not be inside a data
	// directory that gets removed.
	SharedRoot string
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
	// Cgroups is where boxes' cgroups go (the zero value: /sbx/<id>; a
	// fleet node's: /sbx/nodes/<node>/<id>).
	Cgroups bundle.Cgroups
}

// Runtime is the runsc driver. Its methods are safe for concurrent use on
// different ids.
type Runtime struct {
	bin        string
	root       string
	sharedRoot string
	platform   string
	logger     *slog.Logger
	cgroups    bundle.Cgroups
}

var (
	_ sandbox.Runtime      = (*Runtime)(nil)
	_ sandbox.Checkpointer = (*Runtime)(nil)
)

// Files in a box's bundle directory and in its socket directory.
const (
	configFile = "config.json"
	logFile    = "agent.log"
	pidFile    = "init.pid" // the box's sandbox process (the Sentry)

	// wakesName, in a checkpoint image, says that the agent in it listens
	// again by itself once restored (see Checkpoint).
	wakesName = "agent-wakes"
	// wakeGrace is how long an agent that wakes by itself after a
	// checkpoint gets before it is signalled after all.
	wakeGrace = 3 * time.Second
)

// New returns a runsc driver. It refuses a runsc that does not run.
func New(opts Options) (*Runtime, error) {
	r := &Runtime{bin: opts.Binary, root: opts.Root, sharedRoot: opts.SharedRoot, platform: opts.Platform, logger: opts.Logger, cgroups: opts.Cgroups}
	if r.sharedRoot == "" {
		r.sharedRoot = DefaultSharedRoot
	}
	if r.bin == "" {
		r.bin = DefaultBinary
	}
	if r.platform == "" {
		r.platform = DefaultPlatform
	}
	if r.root == "" {
		return nil, errors.New("runsc: Options.Root is required")
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	r.logger = r.logger.With("runtime", "runsc")
	root, err := filepath.Abs(r.root)
	if err != nil {
		return nil, fmt.Errorf("runsc root: %w", err)
	}
	r.root = root
	out, err := exec.Command(r.bin, "--version").Output()
	if err != nil || !bytes.HasPrefix(out, []byte("runsc version")) {
		return nil, fmt.Errorf("runsc %s does not run (%v); run scripts/setup.sh", r.bin, err)
	}
	if err := checkVersion(string(out)); err != nil {
		return nil, fmt.Errorf("runsc %s: %w", r.bin, err)
	}
	// runsc's control sockets live in its root: their paths must fit in a
	// sockaddr_un (runsc-<id>.sock, ids up to 20 characters here).
	if p := filepath.Join(r.root, "runsc-"+strings.Repeat("x", 20)+".sock"); len(p) > 107 {
		return nil, fmt.Errorf("runsc root %s is too long for its control sockets", r.root)
	}
	// 0711: the state holds each box's full config; the Sentry, running as
	// an unprivileged user, must still reach its control socket.
	if err := os.MkdirAll(r.root, 0o711); err != nil {
		return nil, fmt.Errorf("runsc root: %w", err)
	}
	if err := os.MkdirAll(r.sharedRoot, 0o711); err != nil {
		return nil, fmt.Errorf("runsc shared root: %w", err)
	}
	return r, nil
}

// Start creates and starts box spec.ID; see sandbox.Runtime. It returns once
// the agent's socket exists.
func (r *Runtime) Start(ctx context.Context, spec sandbox.BoxSpec) error {
	return r.launch(ctx, spec, "")
}

// launch starts box spec.ID fresh (image == "") or from the checkpoint
// image in directory image.
func (r *Runtime) launch(ctx context.Context, spec sandbox.BoxSpec, image string) error {
	op := "start"
	if image != "" {
		op = "restore"
	}
	if err := bundle.Validate(spec); err != nil {
		return err
	}
	if !filepath.IsAbs(spec.AgentSocket) {
		return errdefs.New(errdefs.ErrInvalidArgument, "box spec: agent socket %q is not absolute", spec.AgentSocket)
	}
	if r.exists(spec.ID) {
		return errdefs.New(errdefs.ErrConflict, "box %s already exists", spec.ID)
	}
	if err := bundle.EnsureMountpoint(spec.Rootfs, agentapi.BinaryPath); err != nil {
		return fmt.Errorf("%s box %s: agent mount point: %w", op, spec.ID, err)
	}
	// Created here, as host root, rather than by runsc's gofer, which works
	// as the box's root and may not write to /.sbx.
	if err := bundle.EnsureMountDir(spec.Rootfs, agentapi.RunDir); err != nil {
		return fmt.Errorf("%s box %s: socket mount point: %w", op, spec.ID, err)
	}
	// /tmp is bind-mounted from the rootfs (see boxSpec). The rootfs is
	// the box's to change, and the bind's source is resolved on the host:
	// EnsureMountDir refuses a /tmp that is a symlink or crosses one, and
	// nothing writes to the rootfs between this check and runsc's mount
	// (the box is not running).
	if err := bundle.EnsureMountDir(spec.Rootfs, "/tmp"); err != nil {
		return fmt.Errorf("%s box %s: /tmp: %w", op, spec.ID, err)
	}
	if err := bundle.EnsureVolumeDirs(spec); err != nil {
		return fmt.Errorf("%s box %s: %w", op, spec.ID, err)
	}
	sockDir := filepath.Dir(spec.AgentSocket)
	if err := prepareSocketDir(sockDir, spec); err != nil {
		return fmt.Errorf("%s box %s: %w", op, spec.ID, err)
	}
	oci, err := boxSpec(spec, r.cgroups)
	if err != nil {
		return fmt.Errorf("%s box %s: %w", op, spec.ID, errors.Join(errdefs.ErrInvalidArgument, err))
	}
	// The CPU quota is applied once runsc returns: booting the Sentry
	// and, above all, restoring one (its memory loading in parallel with
	// its kernel state) is sbx's work, not the box's, and a quota on it
	// slows every start and restore down. The box's own processes run unbounded only for the moments between the
	// Sentry starting them and runsc returning.
	var cpu *specs.LinuxCPU
	if oci.Linux != nil && oci.Linux.Resources != nil {
		cpu, oci.Linux.Resources.CPU = oci.Linux.Resources.CPU, nil
		// A background box's weight stays: the Sentry's boot is what it
		// is there to slow.
		if cpu != nil && cpu.Shares != nil {
			oci.Linux.Resources.CPU = &specs.LinuxCPU{Shares: cpu.Shares}
		}
	}
	b, err := json.MarshalIndent(oci, "", "\t")
	if err != nil {
		return fmt.Errorf("%s box %s: %w", op, spec.ID, err)
	}
	// 0600: config.json carries the agent's environment (its token).
	if err := atomicfile.Write(filepath.Join(spec.BundleDir, configFile), b, 0o600); err != nil {
		return fmt.Errorf("%s box %s: %w", op, spec.ID, err)
	}
	logf, err := os.OpenFile(filepath.Join(spec.BundleDir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s box %s: %w", op, spec.ID, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- sbx: %s box %s at %s\n", op, spec.ID, time.Now().UTC().Format(time.RFC3339Nano))
	logStart, _ := logf.Seek(0, io.SeekCurrent)

	args := []string{"run"}
	if image != "" {
		// The restored box's new configuration, read by the agent when it
		// listens again (see the package doc).
		if err := writeAgentConfig(sockDir, spec); err != nil {
			return fmt.Errorf("%s box %s: %w", op, spec.ID, err)
		}
		// --background: the box runs once its state is back; its memory
		// pages load behind it, faulted in first where touched (the
		// image is uncompressed, which that needs). runsc holds the
		// pages file open, so the Manager may remove the image after.
		args = []string{"restore", "--image-path", image, "--background"}
	}
	args = append(args, "--detach",
		"--pid-file", filepath.Join(spec.BundleDir, pidFile),
		"--bundle", spec.BundleDir,
		spec.ID)
	cmd := r.command(ctx, r.boxFlags(spec), args...)
	cmd.Stdin = nil // /dev/null
	// runsc hands its own stdio to the box's init: the agent's log.
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	var ran, signalled time.Time
	err = cmd.Run()
	if err == nil {
		err = applyCPU(oci.Linux.CgroupsPath, cpu)
	}
	if err == nil {
		ran = time.Now()
		signalled = ran
		// The image says whether its agent wakes by itself (Checkpoint).
		wakes := false
		if image != "" {
			_, werr := os.Stat(filepath.Join(image, wakesName))
			wakes = werr == nil
		}
		if image != "" && !wakes {
			err = r.signal(ctx, spec.ID, agentapi.WakeSignal)
			signalled = time.Now()
		}
		if err == nil {
			err = r.awaitSocket(ctx, spec.ID, spec.AgentSocket, wakes)
		}
	}
	if err != nil {
		// A half-created box must not linger holding its cgroup and state.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := r.Destroy(cleanup, spec.ID); derr != nil {
			r.logger.Warn("cleanup after failed "+op, "sandbox_id", spec.ID, "err", derr)
		}
		return fmt.Errorf("%s box %s: %w%s", op, spec.ID, err, bundle.LogTail(filepath.Join(spec.BundleDir, logFile), logStart))
	}
	r.logger.Debug("box "+strings.TrimSuffix(op, "e")+"ed", "sandbox_id", spec.ID, "duration", time.Since(start),
		"runsc", ran.Sub(start), "signal", signalled.Sub(ran), "socket", time.Since(signalled))
	return nil
}

// applyCPU sets the CPU quota cpu (nil: none) on the box's cgroup at path
// (relative to the cgroup mounts, as in the spec), on cgroup v2 or v1.
func applyCPU(path string, cpu *specs.LinuxCPU) error {
	if cpu == nil || cpu.Quota == nil {
		return nil
	}
	period := uint64(100000)
	if cpu.Period != nil {
		period = *cpu.Period
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		f := filepath.Join("/sys/fs/cgroup", path, "cpu.max")
		if err := os.WriteFile(f, fmt.Appendf(nil, "%d %d", *cpu.Quota, period), 0); err != nil {
			return fmt.Errorf("cpu quota: %w", err)
		}
		return nil
	}
	dir := filepath.Join("/sys/fs/cgroup/cpu", path)
	if err := os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), fmt.Appendf(nil, "%d", period), 0); err != nil {
		return fmt.Errorf("cpu quota: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), fmt.Appendf(nil, "%d", *cpu.Quota), 0); err != nil {
		return fmt.Errorf("cpu quota: %w", err)
	}
	return nil
}

// boxFlags are runsc's global flags for box spec.
func (r *Runtime) boxFlags(spec sandbox.BoxSpec) []string {
	network := "none"
	if spec.NetNS != "" {
		network = "sandbox"
	}
	flags := []string{
		// The shared empty network namespace runsc pins for its gofers
		// lives here, outside the data directory (it is a mount).
		"--shared-root", r.sharedRoot,
		"--platform", r.platform,
		// The agent's socket: see the package doc. create, never open or
		// all: the box must not connect to host sockets.
		"--host-uds", "create",
		"--network", network,
		// Writes go to the Manager's rootfs, not a Sentry-private overlay.
		"--overlay2", "none",
	}
	if spec.IDMap != nil {
		// Set-uid programs (the base template's sudo) take effect inside
		// the Sentry, as under runc: they make the box's user the box's
		// root, whom the Sentry runs as the unprivileged mapped host uid.
		// The spec's no_new_privs (set without an id map) still stops
		// them when root in the box would be the host's.
		flags = append(flags, "--allow-suid")
	}
	return flags
}

// prepareSocketDir readies the box's socket directory: it is emptied (the
// Manager's own socket goes, as the agent binds a new one, and whatever an
// earlier run of the box left there, symlinks included) and handed to the
// box's root, who creates the socket.
func prepareSocketDir(dir string, spec sandbox.BoxSpec) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("socket dir: %w", err)
	}
	for _, e := range entries {
		// RemoveAll never follows symlinks.
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("socket dir: %w", err)
		}
	}
	if filepath.Base(spec.AgentSocket) != agentapi.SocketName {
		return fmt.Errorf("agent socket %s must be named %s", spec.AgentSocket, agentapi.SocketName)
	}
	if m := spec.IDMap; m != nil {
		if err := os.Chown(dir, int(m.HostID), int(m.HostID)); err != nil {
			return fmt.Errorf("socket dir: %w", err)
		}
	}
	return os.Chmod(dir, 0o700)
}

// checkVersion refuses a runsc whose `runsc --version` output (out) is not
// of a build with sbx's patches.
func checkVersion(out string) error {
	line, _, _ := strings.Cut(out, "\n")
	v := strings.TrimSpace(strings.TrimPrefix(line, "runsc version"))
	if !strings.Contains(v, versionMark) {
		return fmt.Errorf("version %q lacks sbx's patches (%s): it would not enforce the sandboxes' pids limit; run scripts/setup.sh to build and install the patched runsc", v, versionMark)
	}
	return nil
}

// boxSpec is package bundle's spec with what differs under gVisor.
func boxSpec(s sandbox.BoxSpec, cg bundle.Cgroups) (*specs.Spec, error) {
	spec, err := bundle.Spec(s, bundle.NofileLimit(), cg)
	if err != nil {
		return nil, err
	}
	// The box's syscalls never reach the host kernel: the Sentry serves
	// them, and it and the gofer run under gVisor's own host seccomp
	// filters. The OCI profile is not loaded into the Sentry
	// (--oci-seccomp): gVisor's evaluation of Docker's profile makes
	// clone(2) of threads fail, which breaks node, python threads and
	// most runtimes.
	spec.Linux.Seccomp = nil
	// BoxSpec.UserNS exists so that runc may mount /sys for the box's
	// network namespace; the Sentry has its own /sys, and runsc applies
	// the uid/gid mappings itself rather than joining a user namespace.
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			spec.Linux.Namespaces[i].Path = ""
		}
	}
	// Fork bombs: the host cgroup's pids limit counts the Sentry's host
	// threads and systrap's stub processes, not the box's tasks (they are
	// goroutines of the Sentry), and the Sentry dies when it cannot make
	// one, taking the whole box with it. So the box's limit is enforced
	// inside the Sentry: sbx's patched runsc (scripts/build-runsc.sh) caps
	// the box kernel's live tasks at the annotation's value, whatever their
	// uid, and fork fails with EAGAIN as at runc's pids.max. The annotation
	// is read again on restore, so a box resumed from a checkpoint keeps
	// it. The host limit stays, with room for that many tasks and the
	// Sentry's own, and still bounds what the box can take from the host.
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	spec.Annotations[PidsAnnotation] = strconv.FormatInt(s.Limits.Pids, 10)
	hostPids := 4*s.Limits.Pids + 512
	spec.Linux.Resources.Pids = &specs.LinuxPids{Limit: &hostPids}
	// The agent listens on a socket it binds itself (see the package doc).
	spec.Process.Args = []string{agentapi.BinaryPath, "-listen", "unix:" + agentapi.SocketPath}
	// /tmp stays on the sandbox's disk as under runc: files there count
	// against its disk quota, and survive a files-only pause and template
	// builds. Without a mount of its own, runsc would put an in-memory
	// tmpfs over an empty /tmp.
	spec.Mounts = append(spec.Mounts, specs.Mount{
		Destination: "/tmp",
		Type:        "bind",
		Source:      filepath.Join(s.Rootfs, "tmp"),
		Options:     []string{"rbind", "rw", "nosuid", "nodev"},
	})
	spec.Mounts = append(spec.Mounts, specs.Mount{
		Destination: agentapi.RunDir,
		Type:        "bind",
		Source:      filepath.Dir(s.AgentSocket),
		// Writable (the agent binds its socket there) but nothing in it
		// can be executed, made setuid or used as a device.
		Options: []string{"bind", "rw", "nosuid", "nodev", "noexec"},
	})
	return spec, nil
}

// awaitSocket waits until the agent listens on its socket at path, the box
// died, or ctx ends. It connects rather than looks: the socket file exists
// from bind(2) on, a little before listen(2).
//
// With wakes, the agent listens again by itself at the end of a checkpoint
// (see Checkpoint); should it not within wakeGrace, it is sent SIGUSR2 after
// all.
func (r *Runtime) awaitSocket(ctx context.Context, id, path string, wakes bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	// Every millisecond at first (a failed dial of a missing socket is one
	// cheap system call; the agent usually listens within a few), then
	// less often.
	delay := time.Millisecond
	checked := time.Now()
	for n := 0; ; n++ {
		if c, err := sandbox.DialSocket(ctx, path); err == nil {
			c.Close()
			return nil
		}
		if wakes && time.Since(start) > wakeGrace {
			r.logger.Warn("the agent did not listen again by itself after the checkpoint; signalling it", "sandbox_id", id)
			if err := r.signal(ctx, id, agentapi.WakeSignal); err != nil {
				return err
			}
			wakes = false
		}
		// Every so often, make sure the box is still there to wait for
		// (a runsc process: not at every poll).
		if time.Since(checked) > 300*time.Millisecond {
			if bs, err := r.State(ctx, id); err == nil && !bs.Running {
				return fmt.Errorf("the box stopped before its agent listened")
			}
			checked = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the agent's socket: %w", ctx.Err())
		case <-time.After(delay):
		}
		if n >= 200 {
			delay = min(delay*2, 20*time.Millisecond)
		}
	}
}

// state is the part of `runsc state` output the driver reads.
type state = bundle.OCIState

// State reports box id's state; see sandbox.Runtime. Pid is the host pid of
// the box's sandbox process (the Sentry), which holds every process of the
// box.
func (r *Runtime) State(ctx context.Context, id string) (sandbox.BoxState, error) {
	if !bundle.ValidID(id) || !r.exists(id) {
		return sandbox.BoxState{}, nil
	}
	st, err := r.state(ctx, id)
	if err != nil {
		if !r.exists(id) { // destroyed meanwhile
			return sandbox.BoxState{}, nil
		}
		return sandbox.BoxState{}, fmt.Errorf("state of box %s: %w", id, err)
	}
	if st.Status == "paused" && r.checkpointing(id) {
		// A checkpoint that outlived the sbx serve that started it (runsc
		// runs on in its own process group) is still writing the image:
		// report the box once that has settled, one way or the other.
		deadline := time.Now().Add(time.Minute)
		for st.Status == "paused" && r.checkpointing(id) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return sandbox.BoxState{}, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			if st, err = r.state(ctx, id); err != nil {
				if !r.exists(id) {
					return sandbox.BoxState{}, nil
				}
				return sandbox.BoxState{}, fmt.Errorf("state of box %s: %w", id, err)
			}
		}
	}
	if st.Status == "running" && zombie(st.Pid) {
		// The sandbox process has exited and awaits reaping by the host's
		// init: runsc still calls that running, but nothing runs.
		st.Status = "stopped"
	}
	if st.Status == "running" {
		if err := r.repairQuiesced(ctx, id); err != nil {
			// A checkpoint that completed stops the box: runsc's
			// status lags behind the sandbox exiting (its control
			// server is already gone). Give it a moment to settle.
			for deadline := time.Now().Add(10 * time.Second); ; {
				if st, _ = r.state(ctx, id); st.Status != "running" {
					break
				}
				if time.Now().After(deadline) {
					return sandbox.BoxState{}, fmt.Errorf("state of box %s: %w", id, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	bs, err := st.BoxState()
	if err != nil {
		return sandbox.BoxState{}, fmt.Errorf("state of box %s: runsc: %w", id, err)
	}
	return bs, nil
}

func (r *Runtime) state(ctx context.Context, id string) (state, error) {
	out, err := r.output(ctx, nil, "state", id)
	if err != nil {
		return state{}, err
	}
	var st state
	if err := json.Unmarshal(out, &st); err != nil {
		return state{}, err
	}
	return st, nil
}

// zombie reports whether process pid has exited but not been reaped yet.
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// checkpointing reports whether box id's agent has let go of its socket for
// a checkpoint (see Checkpoint).
func (r *Runtime) checkpointing(id string) bool {
	dir, err := r.socketDir(id)
	if err != nil {
		return false
	}
	_, err = os.Lstat(filepath.Join(dir, agentapi.QuiescedName))
	return err == nil
}

// Foreground gives box id, started with BoxSpec.Background, the default
// CPU weight (sandbox.Foregrounder).
func (r *Runtime) Foreground(ctx context.Context, id string) error {
	return r.cgroups.Foreground(id)
}

// Pause freezes every process of box id (the Sentry stops its tasks).
func (r *Runtime) Pause(ctx context.Context, id string) error {
	return r.simple(ctx, "pause", id)
}

// Resume thaws box id.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	return r.simple(ctx, "resume", id)
}

func (r *Runtime) simple(ctx context.Context, op, id string) error {
	if !bundle.ValidID(id) || !r.exists(id) {
		return fmt.Errorf("%s box %s: %w", op, id, sandbox.ErrBoxNotFound)
	}
	if _, err := r.output(ctx, nil, op, id); err != nil {
		if !r.exists(id) {
			return fmt.Errorf("%s box %s: %w", op, id, sandbox.ErrBoxNotFound)
		}
		return fmt.Errorf("%s box %s: %w", op, id, err)
	}
	return nil
}

// Destroy kills box id and removes its cgroup and runsc state. Unknown ids
// and boxes that already stopped are fine.
func (r *Runtime) Destroy(ctx context.Context, id string) error {
	if !bundle.ValidID(id) || !r.exists(id) {
		return nil
	}
	if _, err := r.output(ctx, nil, "delete", "--force", id); err != nil {
		if !r.exists(id) {
			return nil
		}
		return fmt.Errorf("destroy box %s: %w", id, err)
	}
	return nil
}

// exists reports whether runsc has state for box id. Checking runsc's state
// file (<id>_sandbox:<id>.state for a box that is its own sandbox) avoids
// matching runsc's error text.
func (r *Runtime) exists(id string) bool {
	_, err := os.Stat(filepath.Join(r.root, id+"_sandbox:"+id+".state"))
	return err == nil
}

// signal sends sig to box id's init, the agent.
func (r *Runtime) signal(ctx context.Context, id string, sig unix.Signal) error {
	_, err := r.output(ctx, nil, "kill", id, fmt.Sprint(int(sig)))
	return err
}

// command returns a runsc invocation with global flags before the
// subcommand. runsc runs in its own process group, so a Ctrl-C aimed at sbx
// does not interrupt it halfway, and with a minimal environment.
func (r *Runtime) command(ctx context.Context, flags []string, args ...string) *exec.Cmd {
	all := append([]string{"--root", r.root}, flags...)
	cmd := exec.CommandContext(ctx, r.bin, append(all, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// output runs runsc and returns its stdout; its stderr goes into the error.
func (r *Runtime) output(ctx context.Context, flags []string, args ...string) ([]byte, error) {
	cmd := r.command(ctx, flags, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2048 {
			msg = msg[:2048] + "…"
		}
		if msg != "" {
			return out, fmt.Errorf("runsc %s: %w: %s", args[0], err, msg)
		}
		return out, fmt.Errorf("runsc %s: %w", args[0], err)
	}
	return out, nil
}

// MemoryUsage reports the memory box id's cgroup is charged for.
func (r *Runtime) MemoryUsage(ctx context.Context, id string) (int64, error) {
	return r.cgroups.MemoryUsage(id)
}

// Usage reports what box id's cgroup has used (CPU time, memory).
func (r *Runtime) Usage(ctx context.Context, id string) (sandbox.BoxUsage, error) {
	return r.cgroups.Usage(id)
}
