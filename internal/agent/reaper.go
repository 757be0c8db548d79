package agent

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper collects the exit status of every child of the agent. As PID 1 of a
// sandbox the agent inherits every orphaned process; if nobody waited for them
// they would stay zombies and fill the pid table. Outside a sandbox (tests,
// development) the agent makes itself a child subreaper so orphans reach it
// the same way and the same code path is exercised.
//
// One goroutine calls wait4(-1, WNOHANG) on each SIGCHLD and hands statuses
// of started processes to their owners by pid. Nothing else in the OS
// process may wait for children: os/exec's Cmd.Wait would race with it.
type reaper struct {
	log *slog.Logger

	// mu is held while reaping and while forking a tracked child, so a child
	// that exits at once cannot be reaped before its waiter is registered
	// (its status would then be taken for an orphan's and lost).
	mu      sync.Mutex
	waiters map[int]func(unix.WaitStatus)
	// orphaned, if set, is told each orphan reaped (tests). Guarded by mu.
	orphaned func(pid int)

	sigs chan os.Signal
	stop chan struct{}
	done chan struct{}
}

func newReaper(log *slog.Logger) (*reaper, error) {
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("become child subreaper: %w", err)
		}
	}
	r := &reaper{
		log:     log,
		waiters: make(map[int]func(unix.WaitStatus)),
		sigs:    make(chan os.Signal, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.loop()
	return r, nil
}

func (r *reaper) loop() {
	defer close(r.done)
	r.reap() // children that exited before we subscribed to SIGCHLD
	for {
		select {
		case <-r.sigs:
			r.reap()
		case <-r.stop:
			return
		}
	}
}

// reap waits for every child that has exited. SIGCHLDs coalesce, so it loops
// until no exited child is left.
//
// The agent's own commands are collected by pid first, then orphans in
// batches: under a fork bomb orphans exit as fast as they are reaped, and a
// wait for any child may keep picking them (gVisor's wait4(-1) did, leaving
// a finished command a zombie for minutes, its caller waiting).
func (r *reaper) reap() {
	for {
		r.reapWaiters()
		for i := 0; ; i++ {
			if !r.reapOne() {
				return
			}
			if i == 64 {
				break // more orphans: see to our own commands again first
			}
		}
	}
}

// reapWaiters collects the agent's own children that have exited.
func (r *reaper) reapWaiters() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid, fn := range r.waiters {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		for err == unix.EINTR {
			got, err = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
		if err == nil && got == pid {
			delete(r.waiters, pid)
			fn(ws)
		}
	}
}

// reapOne collects one exited child and reports whether there may be more.
// It holds the lock for one wait4 only, not for the whole loop: under a fork
// bomb orphans exit as fast as they are reaped, and a lock held until none
// is left would keep start, and so every new command, waiting forever.
func (r *reaper) reapOne() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ws unix.WaitStatus
	pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
	if err == unix.EINTR {
		return true
	}
	if err != nil || pid <= 0 { // ECHILD: no children; 0: none exited
		return false
	}
	if fn, ok := r.waiters[pid]; ok {
		delete(r.waiters, pid)
		fn(ws)
		return true
	}
	r.log.Debug("reaped orphan", "pid", pid, "status", statusString(ws))
	if r.orphaned != nil {
		r.orphaned(pid)
	}
	return true
}

// start calls spawn, which forks a child and returns its pid, and registers
// onExit for that pid before any reaping can happen. onExit is called from
// the reaper goroutine and must not block.
func (r *reaper) start(spawn func() (int, error), onExit func(unix.WaitStatus)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := spawn()
	if err != nil {
		return 0, err
	}
	r.waiters[pid] = onExit
	return pid, nil
}

// hasChildren reports whether the agent has any child left, running or not
// yet reaped.
func (r *reaper) hasChildren() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var info unix.Siginfo
	// WNOWAIT: only look; the reaper goroutine collects the status.
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err != unix.ECHILD
}

// close stops the reaper goroutine.
func (r *reaper) close() {
	signal.Stop(r.sigs)
	close(r.stop)
	<-r.done
}

// statusString describes ws the way os.ProcessState.String does
// ("exit status 1", "signal: killed"), which is what envd reports.
func statusString(ws unix.WaitStatus) string {
	var s string
	switch {
	case ws.Exited():
		s = fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		s = "signal: " + ws.Signal().String()
	case ws.Stopped():
		s = "stop signal: " + ws.StopSignal().String()
	case ws.Continued():
		s = "continued"
	}
	if ws.CoreDump() {
		s += " (core dumped)"
	}
	return s
}
