package agent

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// asFileUser runs fn with u's filesystem credentials, so that every path
// fn opens, creates or walks is checked by the kernel exactly as it would be
// for a process of u: permissions, ownership of what is created, symlinks
// followed with u's rights.
//
// Threat: the agent runs as the sandbox's root, and /files takes paths
// chosen by the caller, through directories and symlinks that any user in
// the sandbox may have planted. Checking permissions in Go (stat, then open)
// would race with a symlink swap between the two calls; opening with the
// user's credentials leaves the check to the kernel at the open itself, so
// a non-root user cannot reach /etc/shadow, write into /etc or through a
// symlink to a root-owned file. Symlinks are therefore followed (as envd
// and a shell of the user would); O_NOFOLLOW would add nothing. Paths stay
// inside the sandbox because the agent's own root is the sandbox's root.
//
// The credentials are set with setgroups, setfsgid and setfsuid on a
// locked OS thread that is never unlocked: Go ends a locked thread whose
// goroutine returns, so no other goroutine ever runs with them, and the
// runtime does not clone new threads from a locked one. A fsuid other than
// 0 also clears the thread's effective file capabilities (CAP_DAC_OVERRIDE,
// CAP_CHOWN, CAP_FOWNER...). The descriptors fn opens stay usable on any
// thread afterwards: reads and writes are not checked again.
//
// For root fn runs directly.
func asFileUser(u *account, fn func() error) error {
	if u.uid == 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread; see above.
		if err := setThreadFileCreds(u); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// setThreadFileCreds gives the calling thread u's groups, fsgid and fsuid.
// Every step is verified: running fn as root by mistake is the failure to
// avoid, so any doubt is an error.
func setThreadFileCreds(u *account) error {
	groups := make([]int, len(u.groups))
	for i, g := range u.groups {
		groups[i] = int(g)
	}
	// x/sys/unix.Setgroups is a raw per-thread syscall, unlike
	// syscall.Setgroups, which changes every thread of the process.
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("set groups for %s: %w", u.name, err)
	}
	unix.SetfsgidRetGid(int(u.gid))
	if prev, _ := unix.SetfsgidRetGid(int(u.gid)); prev != int(u.gid) {
		return fmt.Errorf("setfsgid(%d) for %s did not take effect", u.gid, u.name)
	}
	unix.SetfsuidRetUid(int(u.uid))
	if prev, _ := unix.SetfsuidRetUid(int(u.uid)); prev != int(u.uid) {
		return fmt.Errorf("setfsuid(%d) for %s did not take effect", u.uid, u.name)
	}
	return nil
}
