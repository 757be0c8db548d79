package sandbox

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// MinMemoryMB is the smallest memory limit a sandbox may have: below it the
// agent and a shell do not fit.
const MinMemoryMB = 32

// checkLimits refuses effective limits outside what the server allows. A
// caller must not be able to take more of the host than the operator
// granted one sandbox (--max-cpus, --max-memory-mb), nor ask for limits so
// small or odd that the box cannot start. tpl names the template
// whose defaults gave a value the request did not set, for the message.
func (m *Manager) checkLimits(cpus float64, memoryMB int64, p CreateParams, tpl string) error {
	origin := func(requested bool, what string) string {
		if requested {
			return what
		}
		return fmt.Sprintf("template %q's %s", tpl, what)
	}
	if cpus < 0 || math.IsNaN(cpus) || math.IsInf(cpus, 0) {
		return errdefs.New(errdefs.ErrInvalidArgument, "cpuCount must be positive")
	}
	if m.cfg.MaxCPUs > 0 && cpus > m.cfg.MaxCPUs {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s %v is above the server maximum of %v", origin(p.CPUs != 0, "cpuCount"), cpus, m.cfg.MaxCPUs)
	}
	if memoryMB < 0 || (memoryMB > 0 && memoryMB < MinMemoryMB) {
		return errdefs.New(errdefs.ErrInvalidArgument, "memoryMB must be at least %d", MinMemoryMB)
	}
	if m.cfg.MaxMemoryMB > 0 && memoryMB > m.cfg.MaxMemoryMB {
		return errdefs.New(errdefs.ErrInvalidArgument, "%s %d is above the server maximum of %d", origin(p.MemoryMB != 0, "memoryMB"), memoryMB, m.cfg.MaxMemoryMB)
	}
	return nil
}

// processEnv is the environment every process in a sandbox gets on top of
// the agent's defaults: the template's Env ("K=V"), then the create
// request's envVars, which win.
func processEnv(tplEnv []string, envVars map[string]string) map[string]string {
	if len(tplEnv) == 0 {
		return envVars
	}
	out := make(map[string]string, len(tplEnv)+len(envVars))
	for _, kv := range tplEnv {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			out[k] = v
		}
	}
	for k, v := range envVars {
		out[k] = v
	}
	return out
}

// checkCapacity refuses sb (about to be created or resumed) when the
// sandboxes holding a box, with it, would reserve more than the server's
// capacity (Config.CapacityCPUs, CapacityMemoryMB). A box is held from
// creating (pooled sandboxes included) to paused, where only a frozen box
// still holds it. The caller holds m.capacity until sb's new state is
// stored.
func (m *Manager) checkCapacity(ctx context.Context, sb *Sandbox) error {
	if m.cfg.CapacityCPUs <= 0 && m.cfg.CapacityMemoryMB <= 0 {
		return nil
	}
	all, err := m.db.ListSandboxes(ctx, StateCreating, StateRunning, StatePausing, StatePaused, StateResuming)
	if err != nil {
		return err
	}
	cpus, mem := sb.CPUs, sb.MemoryMB
	for _, o := range all {
		if o.ID == sb.ID || (o.State == StatePaused && o.Life.PauseKind != PauseFrozen) {
			continue
		}
		cpus += o.CPUs
		mem += o.MemoryMB
	}
	if c := m.cfg.CapacityMemoryMB; c > 0 && mem > c {
		return errdefs.New(errdefs.ErrUnavailable, "the server is out of capacity: sandboxes would reserve %d MiB of memory, above its capacity of %d MiB; try again when sandboxes have ended or paused", mem, c)
	}
	if c := m.cfg.CapacityCPUs; c > 0 && cpus > c+1e-9 {
		return errdefs.New(errdefs.ErrUnavailable, "the server is out of capacity: sandboxes would reserve %v CPUs, above its capacity of %v; try again when sandboxes have ended or paused", cpus, c)
	}
	return nil
}
