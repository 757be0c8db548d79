package sandbox

import (
	"context"
	"errors"
	"os"
)

// Runtime is the isolation technology a sandbox runs on: runc containers and
// gVisor (runsc) today, microVMs later. A driver only creates, inspects, freezes and
// destroys boxes; everything else (rootfs assembly, the agent, lifecycle,
// persistence) lives above it in the Manager.
//
// Boxes are not children of the calling process: a box started by Start keeps
// running when sbx serve exits, and a new Runtime value for the same state
// directory finds it again through State.
//
// Methods are safe for concurrent use on different ids; the Manager never
// calls two methods for the same id at once.
type Runtime interface {
	// Start creates and starts box spec.ID running the agent as its init.
	// It returns once the init process exists; the agent may still be
	// starting (its listener is already bound, so dials queue until it
	// accepts).
	Start(ctx context.Context, spec BoxSpec) error
	// State reports whether box id exists and is running. A box that does
	// not exist is reported as BoxState{} with a nil error.
	State(ctx context.Context, id string) (BoxState, error)
	// Pause freezes every process of box id; Resume thaws them.
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	// Destroy kills every process of box id and removes the runtime's state
	// for it. Destroying a box that does not exist is not an error.
	Destroy(ctx context.Context, id string) error
}

// BoxSpec is what a runtime needs to start one box.
type BoxSpec struct {
	// ID names the box; it is the sandbox id ([a-z0-9]{20}).
	ID string
	// Rootfs is a directory on the host, already assembled (an overlayfs
	// mount of the template's layers and the sandbox's upper layer), that
	// becomes the box's root filesystem.
	Rootfs string
	// BundleDir is a private, empty-or-reusable directory where the runtime
	// may keep per-box files (an OCI bundle's config.json, logs).
	BundleDir string
	// AgentPath is the host path of the static sbx-agent binary. It is
	// bind-mounted read-only at agentapi.BinaryPath and run as the box's init.
	AgentPath string
	// AgentListener is a listening unix socket bound at AgentSocket. The
	// runtime passes it to the agent as file descriptor 3 (the first one
	// after stdio).
	AgentListener *os.File
	// AgentSocket is the host path of AgentListener's socket, where the
	// Manager dials the agent. Its directory holds nothing else and is
	// private to the box: a runtime that cannot pass a listening socket
	// into a box (gVisor) bind-mounts the directory into the box instead
	// and has the agent bind a new socket at the same path, replacing the
	// Manager's. The Manager dials without following symlinks there.
	AgentSocket string
	// Env is the agent's environment ("KEY=value"), including its
	// configuration (SBX_AGENT_CONFIG).
	Env []string
	// Hostname is the box's UTS hostname.
	Hostname string
	// Limits bound the box's resources.
	Limits Limits
	// NetNS, when set, is the path of a network namespace the Manager's
	// network layer prepared (its interfaces, addresses and rules already in
	// place); the box joins it. When empty the box gets a new namespace
	// holding only loopback.
	NetNS string
	// UserNS, when set (with IDMap), is the path of a user namespace with
	// IDMap's mapping that the box joins instead of making its own: the one
	// that owns NetNS, so that the box's root may mount /sys for its
	// network namespace. Runtimes that do not mount a host sysfs may
	// ignore it and apply IDMap as usual.
	UserNS string
	// IDMap, when not nil, runs the box in a new user namespace in which
	// ids 0..Size-1 are host ids HostID..HostID+Size-1. The rootfs must be
	// owned by the mapped ids, and its path traversable by them.
	IDMap *IDMap
	// Background starts the box at the lowest CPU weight the host allows,
	// so that its start and whatever it runs yield the CPU to every other
	// box and to sbx. The warm pool starts its boxes so: no caller waits
	// for them, while the creates and commands of a burst that drains the
	// pool do. A runtime that can raise the weight again implements
	// Foregrounder; one that cannot ignores Background.
	Background bool
	// Volumes are host directories bind-mounted read-write into the box,
	// shared with other boxes and the host: writes are seen at once on
	// every side.
	Volumes []BoxMount
}

// Foregrounder is implemented by runtimes that honour BoxSpec.Background:
// Foreground gives box id the CPU weight of a box started normally.
type Foregrounder interface {
	Foreground(ctx context.Context, id string) error
}

// Checkpointer is implemented by runtimes that can save a running box's
// whole state, process memory included, to a directory and start a box again
// from it (gVisor's runsc checkpoint/restore). The Manager uses it for pause
// with memory, snapshots and forks; on runtimes without it, pause freezes the
// box (Runtime.Pause) and snapshots hold files only.
//
// The same concurrency rules as Runtime apply.
type Checkpointer interface {
	// Checkpoint writes box id's state into dir (which exists and is empty).
	// With leaveRunning the box keeps running afterwards (a snapshot or a
	// fork's source); otherwise the box is stopped and destroyed once the
	// image is complete.
	Checkpoint(ctx context.Context, id, dir string, leaveRunning bool) error
	// Restore starts box spec.ID from the image in dir. spec is as for
	// Start; its Rootfs must hold the files as they were at checkpoint time.
	Restore(ctx context.Context, spec BoxSpec, dir string) error
}

// IDMap maps a box's user and group ids onto a range of host ids.
type IDMap struct {
	HostID uint32
	Size   uint32
}

// Limits are a box's resource limits. Zero values mean the Manager's defaults
// were not applied; drivers treat zero as "no limit" only for CPUs.
type Limits struct {
	// CPUs is the CPU quota in cores (1.5 = one and a half cores).
	CPUs float64
	// MemoryBytes is the memory limit, swap included; the box's processes
	// are OOM-killed inside the box beyond it.
	MemoryBytes int64
	// Pids is the maximum number of tasks (processes and threads).
	Pids int64
}

// BoxState is what a runtime knows of a box.
type BoxState struct {
	// Exists is false when the runtime has no box of that id.
	Exists bool
	// Running is true while the box's init process is alive (frozen counts
	// as running; see Paused).
	Running bool
	// Paused is true while the box is frozen.
	Paused bool
	// Pid is the host pid of the box's init process, 0 if not running.
	Pid int
}

// ErrBoxNotFound is returned by Pause and Resume for an unknown box.
var ErrBoxNotFound = errors.New("box not found")

// BoxUsage is what a box's cgroup has used, as runtimes that can tell
// report it (a Usage method; see internal/usage).
type BoxUsage struct {
	// CPUNanos is the CPU time used since the box started.
	CPUNanos uint64
	// MemoryBytes is the memory charged now, page cache included.
	MemoryBytes int64
	// CacheBytes is the file-backed page cache in MemoryBytes (a
	// gVisor box's own memory is shared memory of the Sentry, not page
	// cache); InactiveFileBytes the part of it the kernel would reclaim
	// first.
	CacheBytes, InactiveFileBytes int64
}
