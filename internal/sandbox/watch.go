package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/store"
)

// watchBox follows the init process of running sandbox sb's box (the agent
// under runc, the Sentry under gVisor) and, should it die while sbx still
// counts the sandbox as running, ends the sandbox there and then: a gVisor
// box OOM-killed as a whole, or an agent that crashed, leaves a sandbox that
// is failed with the reason (or, persistent, paused with its files), not one
// listed as running whose every request answers 502.
//
// Deaths sbx causes itself (kill, a memory pause, a files-only pause) are
// told apart under the sandbox's lock: by then its state is no longer
// running, or its box is a new one.
func (m *Manager) watchBox(sb *store.Sandbox) { m.watchBoxPid(sb, 0) }

// watchBoxPid is watchBox for a box whose init the caller has just read
// from the runtime (pid > 0): no second runtime call is made for it.
func (m *Manager) watchBoxPid(sb *store.Sandbox, known int) {
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return
	}
	id := sb.ID
	// In the background: reading the box's state costs a runtime call,
	// which a create must not wait for.
	go func() {
		if known > 0 {
			// The runtime said a moment ago: if this fails, the box is
			// gone already or the pid is not its init.
			if pid, f := m.openInit(id, known); f != nil {
				m.followInit(id, pid, f)
			}
			return
		}
		pid, f := m.openInit(id, m.initPid(id))
		if f == nil {
			// No pid file, or not the box's: ask the runtime.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			st, err := rt.State(ctx, id)
			cancel()
			if err != nil {
				return
			}
			if !st.Running || st.Pid <= 0 {
				m.boxDied(id, 0) // gone already
				return
			}
			if pid, f = m.openInit(id, st.Pid); f == nil {
				return
			}
		}
		m.followInit(id, pid, f)
	}()
}

// followInit waits on pidfd f of box id's init pid, then calls boxDied.
func (m *Manager) followInit(id string, pid int, f *os.File) {
	defer f.Close()
	// One watch per box: a frozen box thawed is still the same one.
	m.mu.Lock()
	if m.watched[id] == pid {
		m.mu.Unlock()
		return
	}
	m.watched[id] = pid
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.watched[id] == pid {
			delete(m.watched, id)
		}
		m.mu.Unlock()
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	// A pidfd becomes readable once its process has exited.
	rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		return err == nil && n > 0
	})
	m.boxDied(id, pid)
}

// openInit opens a pidfd on pid if it is a process of box id (in its
// cgroup); the check follows the open, so a pid reused meanwhile is caught.
// The pidfd is non-blocking, so the runtime's poller waits on it: no thread
// per box.
func (m *Manager) openInit(id string, pid int) (int, *os.File) {
	if pid <= 0 {
		return 0, nil
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return 0, nil
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	// Its cgroup is /sbx/<id>, or /sbx/nodes/<node>/<id> on a fleet node.
	if err != nil || !strings.Contains(string(cg), ":/sbx/") || !strings.Contains(string(cg), "/"+id+"\n") {
		f.Close()
		return 0, nil
	}
	return pid, f
}

// initPid returns the pid in the pid file the runtime wrote for box id's
// init (0 if none), which saves a runtime state call (a runc process) per
// sandbox started; openInit checks it.
func (m *Manager) initPid(id string) int {
	b, err := os.ReadFile(filepath.Join(m.dir(id), "bundle", "init.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// boxDied ends sandbox id if the box whose init was pid is the one it runs
// on and the sandbox is still meant to be running.
func (m *Manager) boxDied(id string, pid int) {
	unlock := m.lock(id)
	defer unlock()
	ctx, cancel := context.WithTimeout(withReason(context.Background(), "box exited"), 60*time.Second)
	defer cancel()
	sb, err := m.db.GetSandbox(ctx, id)
	if err != nil || sb.State != StateRunning {
		return // killed, paused or gone: sbx ended that box itself
	}
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return
	}
	if st, err := rt.State(ctx, id); err != nil || (st.Running && st.Pid != pid) {
		return // unreadable (keep it as it is), or a newer box runs
	}
	why := "its box exited unexpectedly"
	if n := oomKills(m.cfg.CgroupParent, id); n > 0 {
		why = fmt.Sprintf("its box was killed for running out of memory (limit %d MiB)", sb.MemoryMB)
	}
	log := m.log.With("sandbox_id", id, "runtime", sb.Runtime)
	if sb.Life.Persistent {
		if err := m.keepFiles(ctx, sb, why); err != nil {
			log.Error("record the sandbox as paused after its box died", "err", err)
		}
		return
	}
	m.release(ctx, sb)
	if err := m.transition(ctx, sb, StateFailed, func(sb *store.Sandbox) { sb.Error = why }); err != nil {
		log.Error("record the sandbox as failed", "err", err)
		return
	}
	m.hooks().gone(id) // the proxy drops its connections to the dead agent
	log.Warn("sandbox failed: "+why, "pid", pid)
}

// oomKills returns how many processes the kernel's OOM killer ended in box
// id's memory cgroup (<parent>/<id>, on cgroup v1 or v2), or 0 when it
// cannot tell.
func oomKills(parent, id string) int {
	if parent == "" {
		parent = "/sbx"
	}
	// A box started before its node's boxes moved under /sbx/nodes/<node>
	// is still at /sbx/<id>.
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup/memory", parent, id, "memory.oom_control"), // v1
		filepath.Join("/sys/fs/cgroup", parent, id, "memory.events"),             // v2
		filepath.Join("/sys/fs/cgroup/memory/sbx", id, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup/sbx", id, "memory.events"),
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				return n
			}
		}
	}
	return 0
}
