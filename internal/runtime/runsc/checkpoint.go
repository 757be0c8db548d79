package runsc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/runtime/bundle"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// Checkpoint writes box id's whole state (memory included) into dir; see
// sandbox.Checkpointer and the package doc for how the agent's socket is
// let go of first. With leaveRunning the box keeps running and its agent
// listens again afterwards; otherwise the box is destroyed once the image
// is complete.
func (r *Runtime) Checkpoint(ctx context.Context, id, dir string, leaveRunning bool) error {
	if !bundle.ValidID(id) || !r.exists(id) {
		return fmt.Errorf("checkpoint box %s: %w", id, sandbox.ErrBoxNotFound)
	}
	sockDir, err := r.socketDir(id)
	if err != nil {
		return fmt.Errorf("checkpoint box %s: %w", id, err)
	}
	st, err := r.State(ctx, id)
	if err != nil {
		return fmt.Errorf("checkpoint box %s: %w", id, err)
	}
	// A frozen box (the Manager pauses a box before it snapshots its
	// files) cannot take signals: thaw it for the few milliseconds the
	// agent needs to let go of its socket, then freeze it again for the
	// checkpoint, and leave it frozen as it was found.
	wasPaused := st.Paused
	if wasPaused {
		if err := r.Resume(ctx, id); err != nil {
			return fmt.Errorf("checkpoint box %s: %w", id, err)
		}
	}
	wakes, err := r.quiesce(ctx, id, sockDir)
	if err != nil {
		err = fmt.Errorf("checkpoint box %s: %w", id, err)
		if wasPaused {
			err = errors.Join(err, r.Pause(ctx, id))
		}
		return err
	}
	if wasPaused {
		if err := r.Pause(ctx, id); err != nil {
			return fmt.Errorf("checkpoint box %s: %w", id, err)
		}
	}
	args := []string{"checkpoint", "--image-path", dir}
	if leaveRunning {
		args = append(args, "--leave-running")
	}
	_, cerr := r.output(ctx, nil, append(args, id)...)
	if cerr == nil && wakes {
		// The agent in the image listens again by itself once restored.
		cerr = os.WriteFile(filepath.Join(dir, wakesName), nil, 0o600)
	}
	if cerr == nil && !leaveRunning {
		// runsc checkpoint stops the box; its state and cgroup go too.
		return r.Destroy(context.WithoutCancel(ctx), id)
	}
	// The box runs on (by request, or because the checkpoint failed): its
	// agent listens again, by itself at the checkpoint's end if it can
	// (but a failed checkpoint may not have reached the box).
	os.Remove(filepath.Join(sockDir, agentapi.QuiescedName))
	var lerr error
	if wasPaused {
		lerr = r.Resume(ctx, id)
	}
	wakes = wakes && cerr == nil
	if lerr == nil && !wakes {
		lerr = r.signal(ctx, id, agentapi.WakeSignal)
	}
	if lerr == nil {
		lerr = r.awaitSocket(ctx, id, filepath.Join(sockDir, agentapi.SocketName), wakes)
	}
	if wasPaused {
		lerr = errors.Join(lerr, r.Pause(ctx, id))
	}
	if cerr != nil {
		return fmt.Errorf("checkpoint box %s: %w", id, errors.Join(cerr, lerr))
	}
	if lerr != nil {
		return fmt.Errorf("checkpoint box %s: agent did not listen again: %w", id, lerr)
	}
	return nil
}

// Restore starts box spec.ID from the image in dir; see
// sandbox.Checkpointer. It returns once the restored agent listens on
// spec.AgentSocket again, with spec's configuration.
func (r *Runtime) Restore(ctx context.Context, spec sandbox.BoxSpec, dir string) error {
	return r.launch(ctx, spec, dir)
}

// repairQuiesced gives a running box's agent its socket back when a
// checkpoint was interrupted between quiesce and the image (sbx serve died
// there): the box runs on, but nothing could reach its agent. The Manager
// calls State first for every box it finds after a restart, and never
// while it checkpoints the same box, so a quiesced marker seen here is
// left over.
func (r *Runtime) repairQuiesced(ctx context.Context, id string) error {
	sockDir, err := r.socketDir(id)
	if err != nil {
		return err
	}
	marker := filepath.Join(sockDir, agentapi.QuiescedName)
	if _, err := os.Lstat(marker); err != nil {
		return nil
	}
	r.logger.Warn("box left quiesced by an interrupted checkpoint; giving its agent its socket back", "sandbox_id", id)
	os.Remove(marker)
	if err := r.signal(ctx, id, agentapi.WakeSignal); err != nil {
		return err
	}
	return r.awaitSocket(ctx, id, filepath.Join(sockDir, agentapi.SocketName), false)
}

// quiesce asks box id's agent to close its socket and connections
// (agentapi.QuiesceSignal) and waits for it to say so by creating the
// quiesced marker. wakes reports that the agent will listen again by itself
// at the end of the checkpoint that follows (see the quiesce protocol in
// package agentapi); a marker that says neither counts as not waking, so
// the agent is signalled after the checkpoint.
func (r *Runtime) quiesce(ctx context.Context, id, sockDir string) (wakes bool, err error) {
	marker := filepath.Join(sockDir, agentapi.QuiescedName)
	os.Remove(marker)
	if err := r.signal(ctx, id, agentapi.QuiesceSignal); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Every millisecond at first (an lstat; the agent answers within a
	// few), then less often.
	delay := time.Millisecond
	for n := 0; ; n++ {
		if _, err := os.Lstat(marker); err == nil {
			wakes, err := agentapi.ReadQuiesced(sockDir)
			if err != nil {
				r.logger.Warn("unreadable quiesced marker: the agent will be signalled after the checkpoint", "sandbox_id", id, "err", err)
			}
			return wakes, nil
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("the agent did not let go of its socket: %w", ctx.Err())
		case <-time.After(delay):
		}
		if n >= 200 {
			delay = min(delay*2, 20*time.Millisecond)
		}
	}
}

// socketDir returns the host directory mounted at agentapi.RunDir in box id, from
// the bundle runsc recorded.
func (r *Runtime) socketDir(id string) (string, error) {
	out, err := r.output(context.Background(), nil, "state", id)
	if err != nil {
		return "", err
	}
	var st struct {
		Bundle string `json:"bundle"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(st.Bundle, configFile))
	if err != nil {
		return "", err
	}
	var spec struct {
		Mounts []struct {
			Destination string `json:"destination"`
			Source      string `json:"source"`
		} `json:"mounts"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return "", err
	}
	for _, m := range spec.Mounts {
		if m.Destination == agentapi.RunDir {
			return m.Source, nil
		}
	}
	return "", fmt.Errorf("box %s has no %s mount", id, agentapi.RunDir)
}

// writeAgentConfig puts the agent configuration of spec into the box's
// socket directory, readable by the box's root only: a restored agent reads
// it (and removes it) when it listens again. The directory was emptied
// before (prepareSocketDir) and the box is not running, so the file is
// created fresh; O_EXCL|O_NOFOLLOW make sure of it anyway, since the box
// can leave symlinks there and one must never redirect a host write.
func writeAgentConfig(sockDir string, spec sandbox.BoxSpec) error {
	var cfg string
	for _, kv := range spec.Env {
		if v, ok := strings.CutPrefix(kv, agentapi.ConfigEnv+"="); ok {
			cfg = v
		}
	}
	if cfg == "" {
		return fmt.Errorf("box spec has no %s", agentapi.ConfigEnv)
	}
	f, err := os.OpenFile(filepath.Join(sockDir, agentapi.ReconfigName), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	defer f.Close()
	if m := spec.IDMap; m != nil {
		if err := f.Chown(int(m.HostID), int(m.HostID)); err != nil {
			return fmt.Errorf("agent config: %w", err)
		}
	}
	if _, err := f.WriteString(cfg); err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	return f.Close()
}
