package agent

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// fsIdentity runs filesystem calls with a user's identity, so that neither
// the filesystem service nor /files can be used to read, change or remove
// what the calling user could not (a non-root caller reading /etc/shadow or
// /root, writing into /etc, removing root-owned files in /, or going through
// a symlink another user planted to a root-owned file). Symlinks are
// followed as a shell of the user would follow them; paths stay inside the
// sandbox because the agent's own root is the sandbox's root.
//
// The kernel, not the agent, decides: each call runs on an OS thread whose
// filesystem uid, gid and supplementary groups (setfsuid(2), setfsgid(2),
// setgroups(2), all per thread on Linux) are the user's. Changing the
// filesystem uid from 0 also drops the capabilities that bypass file
// permissions (CAP_DAC_OVERRIDE, CAP_FOWNER...) from that thread, so every
// permission rule applies: search permission on each directory, the sticky
// bit, owner-only chmod and chown, and files created belong to the user.
// Checking access in the agent instead (faccessat and the like) would race
// with the calls it guards and miss rules such as the sticky bit.
//
// The thread is locked to one goroutine that never unlocks it: when the
// goroutine returns, the Go runtime ends the thread rather than hand its
// changed identity to other goroutines. Threads the runtime creates while
// it runs are cloned from the runtime's template thread, not from it.
type fsIdentity struct {
	calls chan func() // nil: calls run on the caller's thread (root)
}

// newFSIdentity starts a thread with u's filesystem identity. Root runs on
// the caller's thread: the agent is root already. Close it when done.
func newFSIdentity(u *account) (*fsIdentity, error) {
	if u.uid == 0 && u.gid == 0 {
		return &fsIdentity{}, nil
	}
	t := &fsIdentity{calls: make(chan func())}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked, see above.
		if err := setThreadFSIdentity(u); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for fn := range t.calls {
			fn()
		}
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("take the filesystem identity of %q: %w", u.name, err)
	}
	return t, nil
}

// do runs fn with the identity and returns its error. It may be called from
// several goroutines; calls run one at a time.
func (t *fsIdentity) do(fn func() error) error {
	if t.calls == nil {
		return fn()
	}
	var err error
	done := make(chan struct{})
	t.calls <- func() {
		defer close(done)
		err = fn()
	}
	<-done
	return err
}

// close ends the thread. No call may follow.
func (t *fsIdentity) close() {
	if t.calls != nil {
		close(t.calls)
	}
}

// asUser runs fn with u's filesystem identity.
func asUser(u *account, fn func() error) error {
	t, err := newFSIdentity(u)
	if err != nil {
		return err
	}
	defer t.close()
	return t.do(fn)
}

// setThreadFSIdentity gives the calling thread u's filesystem identity. The
// thread must be locked. The raw syscalls of x/sys/unix change this thread
// only (the syscall package's Setgroups would change every thread).
func setThreadFSIdentity(u *account) error {
	groups := make([]int, len(u.groups))
	for i, g := range u.groups {
		groups[i] = int(g)
	}
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setfsgid(int(u.gid)); errors.Is(err, unix.ENOSYS) {
		// gVisor has no filesystem ids; see setThreadEffectiveIdentity.
		return setThreadEffectiveIdentity(u)
	} else if err != nil {
		return fmt.Errorf("setfsgid: %w", err)
	}
	if err := unix.Setfsuid(int(u.uid)); err != nil {
		return fmt.Errorf("setfsuid: %w", err)
	}
	// setfsuid and setfsgid do not report every failure (without
	// CAP_SETUID they just keep the old id). An invalid id changes nothing
	// and returns the current one: read them back, and refuse to go on with
	// root's identity.
	if got, _ := unix.SetfsgidRetGid(-1); got != int(u.gid) {
		return fmt.Errorf("setfsgid %d did not take (fsgid is %d)", u.gid, got)
	}
	if got, _ := unix.SetfsuidRetUid(-1); got != int(u.uid) {
		return fmt.Errorf("setfsuid %d did not take (fsuid is %d)", u.uid, got)
	}
	return nil
}

// setThreadEffectiveIdentity gives the calling thread u's identity through
// its effective uid and gid instead, for kernels without filesystem ids
// (gVisor's Sentry returns ENOSYS for setfsuid). The effect on file access
// is the same: the effective ids are the filesystem ids, and an effective
// uid changing from 0 to another clears the thread's effective
// capabilities. The real and saved ids stay 0, so this thread could take
// root back, but it only ever runs the agent's own filesystem calls and
// ends with them. Raw syscalls: they change this thread only.
func setThreadEffectiveIdentity(u *account) error {
	const keep = ^uintptr(0) // -1: leave unchanged
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, keep, uintptr(u.gid), keep); e != 0 {
		return fmt.Errorf("setresgid: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(u.uid), keep); e != 0 {
		return fmt.Errorf("setresuid: %w", e)
	}
	if got := unix.Getegid(); got != int(u.gid) {
		return fmt.Errorf("setresgid %d did not take (egid is %d)", u.gid, got)
	}
	if got := unix.Geteuid(); got != int(u.uid) {
		return fmt.Errorf("setresuid %d did not take (euid is %d)", u.uid, got)
	}
	return nil
}
