// Package runc runs sandboxes as runc containers: the sandbox.Runtime
// driver sbx uses by default.
//
// # Overview
//
// Each box is an OCI bundle (config.json written into the box's BundleDir)
// started with `runc run --detach`: runc sets the box up and exits, leaving
// the box's init (the sbx agent) reparented to the host's init, so boxes
// outlive sbx serve. runc's state directory (Options.Root) is what lets a
// new Runtime find them again.
//
// The security decisions (namespaces, capabilities, seccomp, masked paths,
// limits) are in package bundle's spec.go, each with the threat it answers;
// the runsc driver shares them.
//
// # cgroups v1 and v2
//
// The spec is the same on both; runc translates it. Box id's cgroup is
// /sbx/<id> under every v1 controller (hybrid hosts included), or
// /sys/fs/cgroup/sbx/<id> on v2; a fleet node's is /sbx/nodes/<node>/<id>
// (Options.Cgroups). On v2:
//   - the memory+swap limit becomes memory.max = limit, memory.swap.max = 0;
//     the CPU quota becomes cpu.max "<quota> 100000"; pids.max as on v1;
//   - runc enables the cpu, memory and pids controllers in
//     /sys/fs/cgroup/cgroup.subtree_control and that of every cgroup on
//     the way to the box's (sbx, and sbx/nodes/<node> for a fleet node);
//     on a host where the root cgroup's controllers are delegated elsewhere
//     (nested containers, some systemd setups) Start fails with runc's error;
//   - OOM counts are in memory.events (oom_kill), not memory.oom_control;
//   - Pause uses cgroup.freeze instead of the v1 freezer controller.
//
// The cgroupfs driver is used even under systemd: systemd does not manage
// /sbx, which is what keeps boxes independent of sbx's own unit.
//
// # Usage
//
//	rt, err := runc.New(runc.Options{Root: "/run/sbx/runc", Logger: logger})
//	err = rt.Start(ctx, sandbox.BoxSpec{...})
//	st, err := rt.State(ctx, id)
package runc

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
	"strings"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/atomicfile"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/runtime/bundle"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// DefaultBinary is where scripts/setup.sh installs runc.
const DefaultBinary = "/usr/local/lib/sbx/runc"

// DefaultRoot is runc's state directory when Options.Root is empty.
const DefaultRoot = "/run/sbx/runc"

// Options configure a Runtime.
type Options struct {
	// Binary is the runc executable (DefaultBinary if empty). It must be
	// built with seccomp support.
	Binary string
	// Root is runc's state directory (`runc --root`), DefaultRoot if empty.
	// Boxes are found again through it after a restart.
	Root string
	// Logger receives the driver's logs; nil discards them.
	Logger *slog.Logger
	// Cgroups is where boxes' cgroups go (the zero value: /sbx/<id>).
	Cgroups bundle.Cgroups
}

// Runtime is the runc driver. It satisfies sandbox.Runtime; its methods are
// safe for concurrent use on different ids.
type Runtime struct {
	bin     string
	root    string
	logger  *slog.Logger
	cgroups bundle.Cgroups
}

var _ sandbox.Runtime = (*Runtime)(nil)

// Files in a box's bundle directory.
const (
	configFile = "config.json"
	logFile    = "agent.log"
	pidFile    = "init.pid"
)

// New returns a runc driver. It refuses a runc that cannot run, or that was
// built without seccomp: such a runc would silently start boxes without
// their syscall filter.
func New(opts Options) (*Runtime, error) {
	r := &Runtime{bin: opts.Binary, root: opts.Root, logger: opts.Logger, cgroups: opts.Cgroups}
	if r.bin == "" {
		r.bin = DefaultBinary
	}
	if r.root == "" {
		r.root = DefaultRoot
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	r.logger = r.logger.With("runtime", "runc")
	root, err := filepath.Abs(r.root)
	if err != nil {
		return nil, fmt.Errorf("runc root: %w", err)
	}
	r.root = root
	out, err := exec.Command(r.bin, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("runc %s: %w (run scripts/setup.sh)", r.bin, err)
	}
	if !bytes.Contains(out, []byte("\nlibseccomp: ")) {
		return nil, fmt.Errorf("runc %s was built without seccomp support; refusing to run boxes without a syscall filter (run scripts/setup.sh)", r.bin)
	}
	// 0700: runc's state holds each box's full config and init pid.
	if err := os.MkdirAll(r.root, 0o700); err != nil {
		return nil, fmt.Errorf("runc root: %w", err)
	}
	return r, nil
}

// Start creates and starts box spec.ID; see sandbox.Runtime.
func (r *Runtime) Start(ctx context.Context, spec sandbox.BoxSpec) error {
	if err := bundle.Validate(spec); err != nil {
		return err
	}
	if r.exists(spec.ID) {
		return errdefs.New(errdefs.ErrConflict, "box %s already exists", spec.ID)
	}
	if err := bundle.EnsureMountpoint(spec.Rootfs, agentapi.BinaryPath); err != nil {
		return fmt.Errorf("start box %s: agent mount point: %w", spec.ID, err)
	}
	if err := bundle.EnsureVolumeDirs(spec); err != nil {
		return fmt.Errorf("start box %s: %w", spec.ID, err)
	}
	oci, err := bundle.Spec(spec, bundle.NofileLimit(), r.cgroups)
	if err != nil {
		return fmt.Errorf("start box %s: %w", spec.ID, errors.Join(errdefs.ErrInvalidArgument, err))
	}
	b, err := json.MarshalIndent(oci, "", "\t")
	if err != nil {
		return fmt.Errorf("start box %s: %w", spec.ID, err)
	}
	// 0600: config.json carries the agent's environment (its token).
	if err := atomicfile.Write(filepath.Join(spec.BundleDir, configFile), b, 0o600); err != nil {
		return fmt.Errorf("start box %s: %w", spec.ID, err)
	}
	logf, err := os.OpenFile(filepath.Join(spec.BundleDir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start box %s: %w", spec.ID, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- sbx: starting box %s at %s\n", spec.ID, time.Now().UTC().Format(time.RFC3339Nano))
	logStart, _ := logf.Seek(0, io.SeekCurrent)

	cmd := r.command(ctx, "run", "--detach",
		// The agent's listener is fd 3 in the box: ExtraFiles[0] below.
		"--preserve-fds", "1",
		// No session keyring per box: every box's root is the same host
		// uid (the id map), and the kernel's per-uid key quota
		// (kernel.keys.maxkeys, 200 by default) would then cap a host at
		// 200 boxes. The box cannot use the keyring it inherits: the
		// seccomp profile refuses keyctl, add_key and request_key, and
		// /proc/keys is masked.
		"--no-new-keyring",
		"--pid-file", filepath.Join(spec.BundleDir, pidFile),
		"--bundle", spec.BundleDir,
		spec.ID)
	cmd.Stdin = nil // /dev/null
	// runc hands its own stdio to the detached box, so this is where the
	// agent's stdout and stderr go too.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{spec.AgentListener}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		// A half-created box (runc failed or ctx ended mid-create) must not
		// linger holding its cgroup and state.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := r.Destroy(cleanup, spec.ID); derr != nil {
			r.logger.Warn("cleanup after failed start", "sandbox_id", spec.ID, "err", derr)
		}
		return fmt.Errorf("start box %s: runc run: %w%s", spec.ID, err, bundle.LogTail(filepath.Join(spec.BundleDir, logFile), logStart))
	}
	r.logger.Debug("box started", "sandbox_id", spec.ID, "duration", time.Since(start))
	return nil
}

// State reports box id's state; see sandbox.Runtime. A box whose init has
// exited still exists (Running false) until Destroy.
func (r *Runtime) State(ctx context.Context, id string) (sandbox.BoxState, error) {
	if !bundle.ValidID(id) || !r.exists(id) {
		return sandbox.BoxState{}, nil
	}
	out, err := r.output(ctx, "state", id)
	if err != nil {
		if !r.exists(id) { // destroyed meanwhile
			return sandbox.BoxState{}, nil
		}
		return sandbox.BoxState{}, fmt.Errorf("state of box %s: %w", id, err)
	}
	var st bundle.OCIState
	if err := json.Unmarshal(out, &st); err != nil {
		return sandbox.BoxState{}, fmt.Errorf("state of box %s: %w", id, err)
	}
	bs, err := st.BoxState()
	if err != nil {
		return sandbox.BoxState{}, fmt.Errorf("state of box %s: runc: %w", id, err)
	}
	return bs, nil
}

// Foreground gives box id, started with BoxSpec.Background, the default
// CPU weight (sandbox.Foregrounder).
func (r *Runtime) Foreground(ctx context.Context, id string) error {
	return r.cgroups.Foreground(id)
}

// Pause freezes every process of box id (cgroup freezer).
func (r *Runtime) Pause(ctx context.Context, id string) error {
	return r.freeze(ctx, "pause", id)
}

// Resume thaws box id.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	return r.freeze(ctx, "resume", id)
}

func (r *Runtime) freeze(ctx context.Context, op, id string) error {
	if !bundle.ValidID(id) || !r.exists(id) {
		return fmt.Errorf("%s box %s: %w", op, id, sandbox.ErrBoxNotFound)
	}
	if _, err := r.output(ctx, op, id); err != nil {
		if !r.exists(id) {
			return fmt.Errorf("%s box %s: %w", op, id, sandbox.ErrBoxNotFound)
		}
		return fmt.Errorf("%s box %s: %w", op, id, err)
	}
	return nil
}

// Destroy kills box id's processes and removes its cgroup and runc state.
// Unknown ids and boxes whose init already died are fine.
func (r *Runtime) Destroy(ctx context.Context, id string) error {
	if !bundle.ValidID(id) || !r.exists(id) {
		return nil
	}
	// --force kills a running (or frozen) box with SIGKILL first.
	if _, err := r.output(ctx, "delete", "--force", id); err != nil {
		if !r.exists(id) {
			return nil // someone else deleted it meanwhile
		}
		return fmt.Errorf("destroy box %s: %w", id, err)
	}
	return nil
}

// exists reports whether runc has state for box id. Checking the state file
// avoids matching runc's "does not exist" error text.
func (r *Runtime) exists(id string) bool {
	_, err := os.Stat(filepath.Join(r.root, id, "state.json"))
	return err == nil
}

// command returns a runc invocation. runc runs in its own process group, so
// a Ctrl-C aimed at sbx does not interrupt it halfway through creating a box,
// and with a minimal environment (the box's environment comes from the spec).
func (r *Runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.bin, append([]string{"--root", r.root}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// output runs runc and returns its stdout; runc's stderr goes into the error.
func (r *Runtime) output(ctx context.Context, args ...string) ([]byte, error) {
	cmd := r.command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return out, fmt.Errorf("runc %s: %w: %s", args[0], err, msg)
		}
		return out, fmt.Errorf("runc %s: %w", args[0], err)
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
