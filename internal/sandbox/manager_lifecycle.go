package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/disk"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/store"
)

// Pause kinds: how a paused sandbox was paused, reported by the API.
//
//   - PauseFrozen: every process is frozen in place (cgroup freezer); memory
//     stays allocated on the host. It survives restarts of sbx serve, not of
//     the host (the sandbox then keeps its files: PauseFilesystem).
//   - PauseMemory: the box was checkpointed to disk (memory and processes)
//     and stopped; it uses no CPU or memory and survives host restarts.
//     Resume restores it: processes continue where they were.
//   - PauseFilesystem: the box was stopped and its files kept; resume starts
//     it again over them (processes start fresh).
//
// A pause asks for memory unless it says otherwise (E2B's memory: false, a
// persistent sandbox's timeout on a runtime without checkpoints); memory
// means PauseMemory on a runtime that implements Checkpointer and
// PauseFrozen on one that does not.
const (
	PauseFrozen     = "frozen"
	PauseMemory     = "memory"
	PauseFilesystem = "filesystem"
)

// Lifecycle is a sandbox's lifecycle policy; see store.SandboxLife.
type Lifecycle = store.SandboxLife

// checkpointDir is where a memory pause writes a sandbox's image, in its
// directory; checkpointDone marks an image as complete.
const (
	checkpointDir  = "checkpoint"
	checkpointDone = "complete"
)

// checkLifecycle validates a create request's lifecycle and fills defaults.
func (m *Manager) checkLifecycle(rtName string, l Lifecycle) (Lifecycle, error) {
	l.PauseKind, l.PausedAt = "", time.Time{}
	switch l.OnTimeout {
	case "":
		l.OnTimeout = "kill"
		if l.Persistent {
			l.OnTimeout = "pause"
			// A persistent sandbox on a runtime without checkpoints keeps
			// its files when it times out rather than staying frozen,
			// holding its memory, with no end.
			if _, ok := m.cfg.Runtimes[rtName].(Checkpointer); !ok {
				l.TimeoutFilesOnly = true
			}
		}
	case "kill", "pause":
	default:
		return l, errdefs.New(errdefs.ErrInvalidArgument, "onTimeout must be kill or pause")
	}
	if l.IdlePause < 0 {
		return l, errdefs.New(errdefs.ErrInvalidArgument, "idle pause must not be negative")
	}
	if l.IdlePause > 0 {
		if l.IdlePause < time.Second {
			return l, errdefs.New(errdefs.ErrInvalidArgument, "idle pause must be at least 1 second")
		}
		// A sandbox paused for want of traffic wakes on traffic.
		l.AutoResume = true
	}
	if l.AutoResume && l.OnTimeout != "pause" && l.IdlePause == 0 {
		return l, errdefs.New(errdefs.ErrInvalidArgument, "autoResume needs autoPause (onTimeout pause) or an idle pause")
	}
	if l.AutoResume && l.TimeoutFilesOnly && l.IdlePause == 0 {
		return l, errdefs.New(errdefs.ErrInvalidArgument, "autoResume cannot be combined with a files-only auto-pause: such a sandbox must be resumed explicitly")
	}
	return l, nil
}

// pauseKind is the kind a pause asking for memory (nil: the default, true)
// gets on runtime rt.
func pauseKind(rt Runtime, memory *bool) string {
	if memory != nil && !*memory {
		return PauseFilesystem
	}
	if _, ok := rt.(Checkpointer); ok {
		return PauseMemory
	}
	return PauseFrozen
}

// Pause pauses running sandbox id; memory selects the kind (see
// PauseFrozen). Pausing a paused sandbox is a conflict (409).
func (m *Manager) Pause(ctx context.Context, id string, memory *bool) (*Sandbox, error) {
	unlock := m.lock(id)
	defer unlock()
	sb, err := m.db.GetSandbox(ctx, id)
	if err != nil {
		return nil, err
	}
	switch sb.State {
	case StateRunning:
	case StatePaused, StatePausing:
		return nil, errdefs.New(errdefs.ErrConflict, "sandbox %q is already paused", id)
	case StateKilled:
		return nil, errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", id)
	default:
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s", id, sb.State)
	}
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return nil, err
	}
	if err := m.pauseLocked(ctx, sb, pauseKind(rt, memory)); err != nil {
		return nil, err
	}
	return sb, nil
}

// pauseLocked pauses sb (running; its lock held) with kind. The state is
// stored as pausing before anything is done, so an interrupted pause is
// finished or undone by Reconcile.
func (m *Manager) pauseLocked(ctx context.Context, sb *store.Sandbox, kind string) error {
	log := m.log.With("sandbox_id", sb.ID, "kind", kind)
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return err
	}
	t0 := time.Now()
	q, err := m.quota(ctx, sb, quotaPause)
	if err != nil {
		return err
	}
	if err := m.transitionQuota(ctx, sb, StatePausing, func(sb *store.Sandbox) {
		sb.Life.PauseKind, sb.Life.PausedAt = kind, time.Now().UTC()
	}, q); err != nil {
		return err
	}
	// The rest must not be cut short by the caller going away: it leaves
	// the box either paused or running.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	if err := m.pauseBox(cctx, sb, rt, kind); err != nil {
		log.Error("pause failed", "err", err)
		// Put the sandbox back in a state it really is in.
		st, serr := rt.State(cctx, sb.ID)
		switch {
		case serr == nil && st.Running && !st.Paused:
			m.removeImage(sb.ID)
			if err := m.transition(cctx, sb, StateRunning, func(sb *store.Sandbox) {
				sb.Life.PauseKind, sb.Life.PausedAt = "", time.Time{}
			}); err != nil {
				return err
			}
		case serr == nil && st.Paused && kind == PauseFrozen:
			return m.transition(cctx, sb, StatePaused, nil)
		default:
			// The box is gone (or unreadable): its files are all that is
			// left, and they are kept.
			if err := m.keepFiles(cctx, sb, "pause failed"); err != nil {
				return err
			}
		}
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "pausing sandbox %q failed; it is %s", sb.ID, sb.State)
	}
	if err := m.transition(cctx, sb, StatePaused, nil); err != nil {
		return err
	}
	log.Info("sandbox paused", "took", time.Since(t0))
	if m.remote != nil {
		// Before the answer: a node stopped right after the pause must
		// not take the only copy with it.
		if err := m.publishPaused(cctx, sb); err != nil {
			log.Error("uploading the paused sandbox to the object store failed; only this node can resume it", "err", err)
		}
	}
	return nil
}

// pauseBox does the runtime's part of a pause.
func (m *Manager) pauseBox(ctx context.Context, sb *store.Sandbox, rt Runtime, kind string) error {
	dir := m.dir(sb.ID)
	switch kind {
	case PauseFrozen:
		return rt.Pause(ctx, sb.ID)
	case PauseMemory:
		cp, ok := rt.(Checkpointer)
		if !ok {
			return fmt.Errorf("the %s runtime cannot checkpoint", sb.Runtime)
		}
		img := filepath.Join(dir, checkpointDir)
		if err := os.RemoveAll(img); err != nil {
			return fmt.Errorf("clear checkpoint dir: %w", err)
		}
		if err := os.Mkdir(img, 0o700); err != nil {
			return fmt.Errorf("checkpoint dir: %w", err)
		}
		if err := cp.Checkpoint(ctx, sb.ID, img, false); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if err := os.WriteFile(filepath.Join(img, checkpointDone), nil, 0o600); err != nil {
			return fmt.Errorf("mark checkpoint complete: %w", err)
		}
		return m.stopBox(ctx, sb)
	case PauseFilesystem:
		return m.stopBox(ctx, sb)
	}
	return fmt.Errorf("unknown pause kind %q", kind)
}

// stopBox destroys sandbox sb's box and unmounts its root filesystem and
// disk, keeping their contents.
func (m *Manager) stopBox(ctx context.Context, sb *store.Sandbox) error {
	id := sb.ID
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return err
	}
	if err := rt.Destroy(ctx, id); err != nil {
		return fmt.Errorf("stop box: %w", err)
	}
	dir := m.dir(id)
	if mounted(filepath.Join(dir, disk.MountDir)) {
		// Written data reaches the image before the loop device goes.
		if f, err := os.Open(filepath.Join(dir, disk.MountDir)); err == nil {
			unix.Syncfs(int(f.Fd()))
			f.Close()
		}
	}
	if err := unmountRootfs(dir); err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	return nil
}

func (m *Manager) removeImage(id string) {
	if err := os.RemoveAll(filepath.Join(m.dir(id), checkpointDir)); err != nil {
		m.log.Warn("remove checkpoint image", "sandbox_id", id, "err", err)
	}
}

// keepFiles records sb as paused with its files only, after its box was
// lost or could not be paused otherwise.
func (m *Manager) keepFiles(ctx context.Context, sb *store.Sandbox, why string) error {
	if err := m.stopBox(ctx, sb); err != nil {
		m.log.Error("stop box of a sandbox keeping its files", "sandbox_id", sb.ID, "err", err)
	}
	m.removeImage(sb.ID)
	keep := func(sb *store.Sandbox) {
		sb.Life.PauseKind = PauseFilesystem
		if sb.Life.PausedAt.IsZero() {
			sb.Life.PausedAt = time.Now().UTC()
		}
	}
	var err error
	if sb.State == StatePaused {
		// Paused already, with what it had; now with its files only.
		keep(sb)
		err = m.update(ctx, sb, nil)
	} else {
		err = m.transition(ctx, sb, StatePaused, keep)
	}
	if err != nil {
		return err
	}
	m.log.Warn("sandbox keeps its files and is paused", "sandbox_id", sb.ID, "why", why)
	return nil
}

// ResumeOptions tune Resume.
type ResumeOptions struct {
	// Timeout is the time to live from now (nil: the server default, 0: no
	// limit).
	Timeout *time.Duration
	// Connect gives E2B's connect semantics: a running sandbox is not an
	// error, and its time to live is only ever extended.
	Connect bool
	// Auto is a resume triggered by a request for the sandbox (auto-resume):
	// only sandboxes that allow it are resumed.
	Auto bool
	// Memory false ignores a memory image, or stops a frozen box, and
	// starts the box afresh over the sandbox's files (E2B's "reboot").
	Memory *bool
}

// Resume resumes paused sandbox id and reports whether it was paused.
// Resuming a running sandbox is a conflict (409) unless opts.Connect.
func (m *Manager) Resume(ctx context.Context, id string, opts ResumeOptions) (*Sandbox, bool, error) {
	d, err := m.resolveTimeout(opts.Timeout)
	if err != nil {
		return nil, false, err
	}
	unlock := m.lock(id)
	sb, err := m.db.GetSandbox(ctx, id)
	if err != nil {
		unlock()
		return nil, false, err
	}
	if opts.Timeout == nil {
		d = m.teamDefaultTimeout(ctx, sb.Team, d)
	}
	if err := m.teamTimeout(ctx, sb.Team, d); err != nil {
		unlock()
		return nil, false, err
	}
	switch sb.State {
	case StatePaused:
	case StateRunning:
		unlock()
		if opts.Auto {
			return sb, false, nil
		}
		if !opts.Connect {
			return nil, false, errdefs.New(errdefs.ErrConflict, "sandbox %q is already running", id)
		}
		sb, err := m.Extend(ctx, id, opts.Timeout)
		return sb, false, err
	case StateKilled:
		unlock()
		return nil, false, errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", id)
	default:
		unlock()
		return nil, false, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s", id, sb.State)
	}
	defer unlock()
	if opts.Auto {
		if !sb.Life.AutoResume || sb.Life.PauseKind == PauseFilesystem {
			return nil, false, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is paused; resume it with connect", id)
		}
		// Woken by traffic: it lives as long as it was set to.
		d = sb.Life.TTL
	}
	if err := m.resumeLocked(ctx, sb, d, opts.Memory); err != nil {
		return nil, false, err
	}
	return sb, true, nil
}

// resumeLocked resumes paused sb (its lock held) to live d from now.
func (m *Manager) resumeLocked(ctx context.Context, sb *store.Sandbox, d time.Duration, memory *bool) error {
	log := m.log.With("sandbox_id", sb.ID, "kind", sb.Life.PauseKind)
	t0 := time.Now()
	if sb.Life.PauseKind == PauseFrozen && memory != nil && !*memory {
		// Memory false (E2B's onResume: 'reboot') on a frozen box: its
		// processes go, its files stay, and it starts afresh over them
		// as a filesystem pause does. Stopping is not left half done
		// when the caller goes away.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err := m.stopBox(sctx, sb)
		cancel()
		if err != nil {
			return errdefs.Wrap(errdefs.ErrUnavailable, err, "stopping the frozen box of sandbox %q failed; it is still paused", sb.ID)
		}
		sb.Life.PauseKind = PauseFilesystem
		if err := m.update(ctx, sb, nil); err != nil {
			return err
		}
		log = log.With("kind", PauseFilesystem, "reboot", true)
	}
	// The new end is stored with the resuming state, so a resume that
	// Reconcile completes keeps it. A box that is not frozen must fit the
	// server's capacity again.
	m.capacity.Lock()
	var err error
	if sb.Life.PauseKind != PauseFrozen {
		err = m.checkCapacity(ctx, sb)
	}
	var q *store.Quota
	if err == nil {
		q, err = m.quota(ctx, sb, quotaResume)
	}
	if err == nil {
		err = m.transitionQuota(ctx, sb, StateResuming, func(sb *store.Sandbox) {
			sb.EndAt = time.Time{}
			if d > 0 {
				sb.EndAt = time.Now().UTC().Add(d)
			}
		}, q)
	}
	m.capacity.Unlock()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	if err := m.resumeBox(cctx, sb, memory); err != nil {
		log.Error("resume failed", "err", err)
		// Whatever was started goes; the sandbox stays paused with what
		// it had (a frozen box that is lost keeps its files).
		if sb.Life.PauseKind == PauseFrozen {
			if st, serr := m.boxState(cctx, sb); serr == nil && st.Paused {
				if perr := m.transition(cctx, sb, StatePaused, nil); perr != nil {
					return perr
				}
				return errdefs.Wrap(errdefs.ErrUnavailable, err, "resuming sandbox %q failed; it is still paused", sb.ID)
			}
			if kerr := m.keepFiles(cctx, sb, "resume failed"); kerr != nil {
				return kerr
			}
			return errdefs.Wrap(errdefs.ErrUnavailable, err, "resuming sandbox %q failed; its files are kept and it is paused", sb.ID)
		}
		if serr := m.stopBox(cctx, sb); serr != nil {
			log.Error("clean up after failed resume", "err", serr)
		}
		if perr := m.transition(cctx, sb, StatePaused, nil); perr != nil {
			return perr
		}
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "resuming sandbox %q failed; it is still paused", sb.ID)
	}
	kind := sb.Life.PauseKind
	if err := m.transition(cctx, sb, StateRunning, func(sb *store.Sandbox) { sb.Life.PauseKind = "" }); err != nil {
		return err
	}
	if kind == PauseMemory {
		m.removeImage(sb.ID)
	}
	log.Info("sandbox resumed", "took", time.Since(t0))
	return nil
}

// resumeBox does the runtime's part of a resume.
func (m *Manager) resumeBox(ctx context.Context, sb *store.Sandbox, memory *bool) error {
	switch sb.Life.PauseKind {
	case PauseFrozen:
		rt, err := m.runtimeOf(sb)
		if err != nil {
			return err
		}
		st, err := rt.State(ctx, sb.ID)
		if err != nil {
			return err
		}
		if !st.Running {
			return fmt.Errorf("the frozen box is gone")
		}
		if st.Paused {
			if err := rt.Resume(ctx, sb.ID); err != nil {
				return err
			}
		}
		hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return m.awaitAgent(hctx, sb.ID)
	case PauseMemory, PauseFilesystem:
		tpl, err := m.snaps.resolveTemplate(ctx, sb.Template)
		if err != nil {
			return fmt.Errorf("template: %w", err)
		}
		image := ""
		if sb.Life.PauseKind == PauseMemory && (memory == nil || *memory) {
			image = filepath.Join(m.dir(sb.ID), checkpointDir)
		}
		// Nothing of an earlier box may be in the way (a runtime process
		// that outlived a crash of sbx serve can leave its state behind).
		rt, err := m.runtimeOf(sb)
		if err != nil {
			return err
		}
		if err := rt.Destroy(ctx, sb.ID); err != nil {
			return fmt.Errorf("clear an earlier box: %w", err)
		}
		t0 := time.Now()
		rootfs, err := m.mountSandbox(ctx, sb.ID, tpl.Layers)
		if err != nil {
			return err
		}
		if err := m.boot(ctx, sb, tpl, bootSpec{rootfs: rootfs, image: image, t0: t0}); err != nil {
			return err
		}
		if image == "" {
			// Fresh processes: the template's start command runs again.
			return m.runStartCommand(ctx, sb, tpl)
		}
		return nil
	}
	return fmt.Errorf("unknown pause kind %q", sb.Life.PauseKind)
}

// wake returns running sandbox id, resuming it first when it is paused
// and allows auto-resume. Anything else is as getRunning.
func (m *Manager) wake(ctx context.Context, id string) (*Sandbox, error) {
	sb, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if sb.State == StatePaused && sb.Life.AutoResume && sb.Life.PauseKind != PauseFilesystem {
		sb, _, err = m.Resume(ctx, id, ResumeOptions{Auto: true})
		if err != nil {
			return nil, err
		}
	}
	if sb.State != StateRunning {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %q is %s", id, sb.State)
	}
	return sb, nil
}

// expire is what a sandbox's end of life does: kill it, or pause it when
// its policy says so.
func (m *Manager) expire(ctx context.Context, cur *store.Sandbox) {
	id := cur.ID
	ctx = withReason(ctx, reasonTimeout)
	if cur.Life.OnTimeout == "pause" {
		memory := !cur.Life.TimeoutFilesOnly
		_, err := m.Pause(ctx, id, &memory)
		if !errors.Is(err, errdefs.ErrResourceExhausted) {
			if err != nil && !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrConflict) {
				m.log.Error("pause timed-out sandbox", "sandbox_id", id, "err", err)
			}
			return
		}
		// Its team keeps as many paused sandboxes as it may: the
		// sandbox's life is over all the same.
		m.log.Warn("timed-out sandbox cannot be kept paused; killing it", "sandbox_id", id, "err", err)
	}
	if err := m.Kill(ctx, id); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		m.log.Error("kill timed-out sandbox", "sandbox_id", id, "err", err)
	}
}

// idlePause is what a sandbox's idle timer calls once it has been idle
// for idle.
func (m *Manager) idlePause(id string, idle time.Duration) {
	ctx, cancel := context.WithTimeout(withReason(context.Background(), reasonIdle), 10*time.Minute)
	defer cancel()
	m.log.Info("sandbox idle; pausing", "sandbox_id", id, "idle", idle)
	if _, err := m.Pause(ctx, id, nil); err != nil && !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrConflict) && !errors.Is(err, errdefs.ErrFailedPrecondition) {
		m.log.Error("idle pause", "sandbox_id", id, "err", err)
	}
}

// reconcileLifecycle settles a sandbox found pausing, paused or resuming
// at start: it ends paused or running, never both, and is never lost (at
// worst it keeps its files).
func (m *Manager) reconcileLifecycle(ctx context.Context, sb *store.Sandbox) error {
	log := m.log.With("sandbox_id", sb.ID, "state", sb.State, "kind", sb.Life.PauseKind)
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return err
	}
	st, err := rt.State(ctx, sb.ID)
	if err != nil {
		log.Error("read box state; keeping the sandbox as stored", "err", err)
		return nil
	}
	kind := sb.Life.PauseKind
	imageDone := fileExists(filepath.Join(m.dir(sb.ID), checkpointDir, checkpointDone))
	running := func(why string) error {
		if err := m.transition(ctx, sb, StateRunning, func(sb *store.Sandbox) { sb.Life.PauseKind = "" }); err != nil {
			return err
		}
		m.removeImage(sb.ID)
		log.Info("sandbox is running", "why", why)
		return nil
	}
	paused := func(why string) error {
		if err := m.transition(ctx, sb, StatePaused, nil); err != nil {
			return err
		}
		log.Info("sandbox is paused", "why", why)
		return nil
	}
	switch sb.State {
	case StatePausing:
		// The pause was asked for and recorded: it is finished.
		switch {
		case kind == PauseFrozen && st.Paused:
			return paused("the freeze had completed")
		case kind == PauseMemory && imageDone:
			if err := m.stopBox(ctx, sb); err != nil {
				return m.keepFiles(ctx, sb, "stop checkpointed box: "+err.Error())
			}
			return paused("the checkpoint had completed")
		case kind == PauseFilesystem:
			if err := m.stopBox(ctx, sb); err != nil {
				log.Error("stop box", "err", err)
			}
			return paused("finished stopping the box")
		case st.Running:
			if err := m.pauseBox(ctx, sb, rt, kind); err != nil {
				return m.keepFiles(ctx, sb, "finish the interrupted pause: "+err.Error())
			}
			return paused("finished the interrupted pause")
		}
		return m.keepFiles(ctx, sb, "interrupted pause left no box")
	case StatePaused:
		switch kind {
		case PauseFrozen:
			if st.Paused {
				return nil
			}
			if st.Running {
				if err := rt.Pause(ctx, sb.ID); err == nil {
					return nil
				}
			}
			return m.keepFiles(ctx, sb, "the frozen box is gone (host restart?)")
		default:
			if st.Exists {
				if err := m.stopBox(ctx, sb); err != nil {
					log.Error("stop stray box of a paused sandbox", "err", err)
				}
			}
			if kind == PauseMemory && !imageDone {
				return m.keepFiles(ctx, sb, "its memory image is incomplete")
			}
			return nil
		}
	case StateResuming:
		if st.Running {
			if st.Paused {
				if err := rt.Resume(ctx, sb.ID); err != nil {
					return m.keepFiles(ctx, sb, "thaw: "+err.Error())
				}
			}
			// The box is up; the resume is complete once its agent
			// answers (a restore cut short may leave it deaf).
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := m.awaitAgent(hctx, sb.ID)
			cancel()
			if err == nil {
				return running("the resume had completed")
			}
			if kind == PauseFrozen {
				return m.keepFiles(ctx, sb, "the thawed box's agent does not answer")
			}
			log.Warn("the resumed box's agent does not answer; undoing the resume", "err", err)
		}
		if kind == PauseFrozen {
			return m.keepFiles(ctx, sb, "the frozen box is gone")
		}
		if err := m.stopBox(ctx, sb); err != nil {
			log.Error("clean up interrupted resume", "err", err)
		}
		if kind == PauseMemory && !imageDone {
			return m.keepFiles(ctx, sb, "its memory image is incomplete")
		}
		return paused("the resume had not completed")
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// boxState is the runtime's view of sandbox sb's box.
func (m *Manager) boxState(ctx context.Context, sb *store.Sandbox) (BoxState, error) {
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return BoxState{}, err
	}
	return rt.State(ctx, sb.ID)
}

// withTransitions adds to a list filter the states on the way into the
// states it names: a sandbox being paused is listed as paused, one being
// resumed as running.
func withTransitions(states []State) []State {
	out := append([]State{}, states...)
	for _, st := range states {
		switch st {
		case StateRunning:
			out = append(out, StateResuming)
		case StatePaused:
			out = append(out, StatePausing)
		}
	}
	return out
}
