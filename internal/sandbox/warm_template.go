package sandbox

import (
	"context"
	"log/slog"
	"sort"

	"github.com/sbxdev/sbx/internal/store"
)

// Per-template warm pools: sandboxes of a named template (the code
// interpreter's, say) kept started with their template's start command run
// and its ready check passed, so that a create of that template waits for
// neither. WarmPoolConfig.Templates sizes them; each keeps its size
// whatever the demand, starts one sandbox at a time, and is bounded by its
// size only (not by WarmPoolConfig.MemoryMB, which is the default pool's).
//
// What a started box has baked in is more than the default pool's: its
// start command runs with the environment it was started with, and keeps
// what it made of it (the code interpreter's kernel). So a create takes a
// pooled sandbox of its template only when it asks for no environment
// variables of its own (and its template's defaults are those the box was
// started with); any other create of the template starts one as if there
// were no pool. Metadata, timeout, lifecycle, egress policy and traffic
// token are the request's, as with the default pool.

// newTemplatePools makes the per-template pools cfg sizes.
func (m *Manager) newTemplatePools(cfg WarmPoolConfig, log *slog.Logger) map[string]*warmPool {
	pools := map[string]*warmPool{}
	for name, n := range cfg.Templates {
		if n <= 0 {
			continue
		}
		pools[name] = newWarmPool(WarmPoolConfig{Min: n, Max: n, Parallel: 1},
			func(ctx context.Context) (*store.Sandbox, []byte, error) { return m.startWarmOf(ctx, name) },
			m.discardWarm, m.memoryUsage, log.With("warm_pool_template", name))
	}
	return pools
}

// Templates lists the templates with a pool of their own, sorted.
func (w WarmPools) Templates() []string {
	m := w.m
	names := make([]string, 0, len(m.warmTpl))
	for name := range m.warmTpl {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// StartTemplate starts filling the pool of template name, if it has
// one; the server calls it once the template exists (a built-in template
// may have to be built first).
func (w WarmPools) StartTemplate(name string) {
	m := w.m
	if w := m.warmTpl[name]; w != nil {
		w.run()
	}
}

// templatePool returns the per-template pool a create of tpl wanting want
// may take a sandbox from; false when there is none or the create asks for
// what a pooled box cannot have (environment variables of its own; a
// memory snapshot).
func (m *Manager) templatePool(tpl Template, want *store.Sandbox) (*warmPool, bool) {
	w := m.warmTpl[tpl.Name]
	if w == nil || tpl.image != "" || len(want.EnvVars) > 0 {
		return nil, false
	}
	return w, true
}

// startWarmOf makes a sandbox of template name for its pool: started, its
// start command run and ready, but left in state creating, unlisted and
// without timers, for a create to take. It returns what its agent was told.
func (m *Manager) startWarmOf(ctx context.Context, name string) (*store.Sandbox, []byte, error) {
	req, err := m.newRequest(ctx, CreateParams{Template: name}, nil, 0)
	if err != nil {
		return nil, nil, err
	}
	unlock := m.lock(req.sb.ID)
	defer unlock()
	sb, err := m.make(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	m.log.Debug("warm sandbox ready", "sandbox_id", sb.ID, "template", name)
	return sb, agentConfigJSON(sb, req.tpl, sb.EnvVars), nil
}

// warmFits reports whether a create wanting want of tpl asks for the
// runtime and resources pooled sandboxes of tpl are started with (a
// request that names none): otherwise no pooled one can serve it, and
// taking one would only discard it.
func (m *Manager) warmFits(tpl Template, want *store.Sandbox) bool {
	return want.Runtime == m.defaultRuntime() &&
		want.CPUs == firstNonZero(tpl.CPUs, m.cfg.DefaultCPUs) &&
		want.MemoryMB == firstNonZero(tpl.MemoryMB, m.cfg.DefaultMemoryMB) &&
		want.DiskMB == m.cfg.DefaultDiskMB && want.Pids == m.cfg.DefaultPids
}
