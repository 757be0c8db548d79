package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/agentapi"
)

// agentSocketDir is the directory, inside a sandbox's directory, that holds
// the agent's socket and nothing else. A runtime that cannot hand the box a
// listening socket (gVisor: a donated listener cannot accept) bind-mounts
// this directory into the box and has the agent create its socket there, so
// the box can write to it; nothing else of the sandbox's directory is
// exposed that way.
const agentSocketDir = agentapi.HostSocketDir

// socketPath is the host path of sandbox id's agent socket.
func (m *Manager) socketPath(id string) string {
	return filepath.Join(m.dir(id), agentSocketDir, agentapi.SocketName)
}

// dialAgent connects to sandbox id's agent socket.
func (m *Manager) dialAgent(ctx context.Context, id string) (net.Conn, error) {
	return DialSocket(ctx, m.socketPath(id))
}

// DialSocket connects to the unix socket at path, refusing to follow a
// symlink at its last component. Runtimes use it to see whether an agent
// listens yet.
//
// Threat: a box that can write to its socket directory (see agentSocketDir)
// replaces agent.sock with a symlink to a host socket (the Docker or
// containerd API, say); the server would then connect there and relay the
// box owner's data-plane requests to it: a host takeover. The socket is
// therefore opened with O_PATH|O_NOFOLLOW, checked to be a socket, and
// connected to through /proc/self/fd, which names exactly that inode.
// The directories above it belong to the host and the box cannot reach
// them.
func DialSocket(ctx context.Context, path string) (net.Conn, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: &fs.PathError{Op: "open", Path: path, Err: err}}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: &fs.PathError{Op: "stat", Path: path, Err: err}}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: fmt.Errorf("%s is not a socket (mode %#o)", path, st.Mode)}
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(fd))
}

// makeSocketDir creates sandbox dir's agent socket directory, or keeps the
// one an earlier boot of the sandbox made. 0700: only the host's root, and
// a box it is bind-mounted into, may use it.
//
// It is a small tmpfs of its own. Threat: a box the directory is
// bind-mounted into (runsc) writing without bound into the data
// directory's filesystem, past its disk quota, until the host's disk is
// full. On tmpfs it can write socketDirBytes at most, charged to the box's
// own memory cgroup (the box's processes write the pages).
func makeSocketDir(dir string) error {
	p := filepath.Join(dir, agentSocketDir)
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create agent socket dir: %w", err)
	}
	// Lstat: the directory itself is never the box's to replace, but check.
	if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
		return fmt.Errorf("agent socket dir %s is not a directory (%v)", p, err)
	}
	if mounted(p) {
		return nil
	}
	opts := fmt.Sprintf("size=%d,nr_inodes=256,mode=0700", socketDirBytes)
	if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount agent socket dir: %w", err)
	}
	return nil
}

// socketDirBytes bounds the agent socket directory: room for the socket,
// a marker and a restored agent's configuration (envVars at their limit).
const socketDirBytes = 32 << 20
