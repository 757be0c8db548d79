package sandbox

import (
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
