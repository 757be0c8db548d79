package sandbox

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/sbxdev/sbx/internal/disk"
)

// BuildBoxes is what template builds (internal/build) need of the
// Manager: sandboxes made from a stack of layers that is no template yet,
// and a way to keep what such a sandbox changed. Get it from
// [Manager.Builds].
type BuildBoxes struct{ m *Manager }

// Builds returns the Manager's part for template builds.
func (m *Manager) Builds() BuildBoxes { return BuildBoxes{m} }

// Create starts a sandbox whose root filesystem is tpl's layers, as
// given rather than looked up by name. tpl.Name is recorded as the
// sandbox's template (the template the build started from, which then
// cannot be removed while the sandbox exists). The sandbox has no time
// limit: its caller kills it (Kill or Commit).
func (b BuildBoxes) Create(ctx context.Context, tpl Template, p CreateParams) (*Sandbox, error) {
	m := b.m
	p.Template = tpl.Name
	req, err := m.newRequest(ctx, p, &tpl, 0)
	if err != nil {
		return nil, err
	}
	return m.makeRunning(ctx, req)
}

// RootfsPath is the host path of sandbox id's root filesystem (its overlay
// mount) while the sandbox runs. Writing there is writing into the
// sandbox: callers resolve paths beneath it without following the
// sandbox's symlinks out of it.
func (b BuildBoxes) RootfsPath(id string) string { return filepath.Join(b.m.dir(id), "rootfs") }

// Commit stops sandbox id's box, unmounts its root filesystem, calls
// capture with the host path of its upper layer (every file the sandbox
// made, changed or deleted, as overlayfs records them), and then kills the
// sandbox whatever capture returned. The upper layer does not change while
// capture runs: nothing is left to write to it.
func (b BuildBoxes) Commit(ctx context.Context, id string, capture func(upper string) error) error {
	m := b.m
	unlock := m.lock(id)
	sb, err := m.db.GetSandbox(ctx, id)
	if err != nil {
		unlock()
		return err
	}
	m.timers.stop(id)
	dir := m.dir(id)
	var cerr error
	if rt, err := m.runtimeOf(sb); err != nil {
		cerr = err
	} else if err := rt.Destroy(ctx, id); err != nil {
		cerr = fmt.Errorf("stop box: %w", err)
	} else if err := unmountAll(filepath.Join(dir, "rootfs")); err != nil {
		cerr = err
	} else {
		upper := filepath.Join(dir, "upper")
		if mounted(filepath.Join(dir, disk.MountDir)) {
			upper = filepath.Join(dir, disk.MountDir, "upper")
		}
		cerr = capture(upper)
	}
	unlock()
	if err := m.Kill(context.WithoutCancel(ctx), id); err != nil && cerr == nil {
		cerr = err
	}
	return cerr
}
