package sandbox

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// Runtime selection: a Manager holds every runtime this server can use, by
// name; each sandbox names its own in its record (store.Sandbox.Runtime),
// chosen at create time, and every later operation on it (kill, reconcile,
// pause) goes to that runtime.

// runtimeNames returns the names of the runtimes sandboxes can be created
// on, sorted.
func (m *Manager) runtimeNames() []string {
	names := make([]string, 0, len(m.cfg.Runtimes))
	for n := range m.cfg.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// defaultRuntime is the runtime of sandboxes whose create request names none.
func (m *Manager) defaultRuntime() string { return m.cfg.RuntimeName }

// pickRuntime resolves the runtime a create request asks for ("" for the
// default) to its name. An unknown or unavailable name is an invalid
// argument whose message says what the server offers.
func (m *Manager) pickRuntime(name string) (string, error) {
	if name == "" {
		name = m.cfg.RuntimeName
	}
	if _, ok := m.cfg.Runtimes[name]; ok {
		return name, nil
	}
	if why, ok := m.cfg.UnavailableRuntimes[name]; ok {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "runtime %q is not available on this server (%s); available: %s", name, why, strings.Join(m.runtimeNames(), ", "))
	}
	return "", errdefs.New(errdefs.ErrInvalidArgument, "unknown runtime %q; available: %s", name, strings.Join(m.runtimeNames(), ", "))
}

// runtimeOf returns the runtime sandbox sb runs on. A sandbox created on a
// runtime this server cannot use now (restarted without runsc installed, say)
// is a failed precondition: its box may still run, and it must not be
// written off on a guess.
func (m *Manager) runtimeOf(sb *Sandbox) (Runtime, error) {
	name := sb.Runtime
	if name == "" {
		name = m.cfg.RuntimeName
	}
	rt, ok := m.cfg.Runtimes[name]
	if !ok {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "sandbox %s runs on runtime %q, which this server cannot use now", sb.ID, name)
	}
	return rt, nil
}

// checkRuntimes validates a Config's runtimes.
func checkRuntimes(cfg *Config) error {
	if len(cfg.Runtimes) == 0 {
		return fmt.Errorf("sandbox manager: no runtimes")
	}
	if cfg.RuntimeName == "" {
		if len(cfg.Runtimes) != 1 {
			return fmt.Errorf("sandbox manager: several runtimes and no default")
		}
		for n := range cfg.Runtimes {
			cfg.RuntimeName = n
		}
	}
	if _, ok := cfg.Runtimes[cfg.RuntimeName]; !ok {
		if why, ok := cfg.UnavailableRuntimes[cfg.RuntimeName]; ok {
			return fmt.Errorf("default runtime %q is not available: %s", cfg.RuntimeName, why)
		}
		return fmt.Errorf("default runtime %q is not one of the runtimes (%s)", cfg.RuntimeName, strings.Join(sortedKeys(cfg.Runtimes), ", "))
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
