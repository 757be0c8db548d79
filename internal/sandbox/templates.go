package sandbox

import (
	"context"
	"errors"
	"sync"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TemplateUse answers for the templates (and snapshots) sandboxes are made
// from: how many use one, removing one that none uses, and the limits a
// template's sandboxes get. Reach it through [Manager.Templates]. It is safe
// for concurrent use.
type TemplateUse struct {
	// mu orders template removal against creates: a create holds it
	// shared from looking its template up until its record is stored, so
	// a template is never removed under a sandbox being made from it.
	mu sync.RWMutex
	db templateCounts
	// warm are the warm pools (the default one, the per-template ones),
	// emptied while a template is removed.
	warm []*warmPool
	// cpus and memoryMB are the server's default limits.
	cpus     float64
	memoryMB int64
}

// templateCounts is what TemplateUse reads of the store (*store.DB).
type templateCounts interface {
	CountSandboxesByTemplate(ctx context.Context, name string) (int, error)
	CountSnapshotsByTemplate(ctx context.Context, name string) (int, error)
	RetargetTemplate(ctx context.Context, from, to string) error
}

// Retarget points the sandboxes and snapshots of template from at
// template to, then calls move (which renames the template in its store);
// should move fail, they are pointed back. No sandbox can be created
// meanwhile. It has the signature of template.Retarget.
func (t *TemplateUse) Retarget(ctx context.Context, from, to string, move func() error) error {
	for _, w := range t.warm {
		release := w.hold()
		defer release()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.db.RetargetTemplate(ctx, from, to); err != nil {
		return err
	}
	if err := move(); err != nil {
		if berr := t.db.RetargetTemplate(context.WithoutCancel(ctx), to, from); berr != nil {
			return errors.Join(err, berr)
		}
		return err
	}
	return nil
}

// Remove calls remove to delete template name unless a sandbox or a
// snapshot uses it (errdefs.ErrConflict); no sandbox can be created from it
// meanwhile.
func (t *TemplateUse) Remove(ctx context.Context, name string, remove func(context.Context, string) error) error {
	// The warm pool's sandboxes are not users of the template to keep it
	// for: none exists, ready or being started, while the template's
	// users are counted and it is removed; then the pool fills again.
	for _, w := range t.warm {
		release := w.hold()
		defer release()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.db.CountSandboxesByTemplate(ctx, name)
	if err != nil {
		return err
	}
	if n > 0 {
		return errdefs.New(errdefs.ErrConflict, "template %q is used by %d sandbox(es)", name, n)
	}
	if n, err = t.db.CountSnapshotsByTemplate(ctx, name); err != nil {
		return err
	}
	if n > 0 {
		return errdefs.New(errdefs.ErrConflict, "template %q is used by %d snapshot(s)", name, n)
	}
	return remove(ctx, name)
}

// Users counts the sandboxes (not failed) made from template name.
func (t *TemplateUse) Users(ctx context.Context, name string) (int, error) {
	return t.db.CountSandboxesByTemplate(ctx, name)
}

// EffectiveLimits returns the CPU and memory a sandbox of a template with
// these defaults gets when its create request names none: the template's,
// else the server's.
func (t *TemplateUse) EffectiveLimits(tplCPUs float64, tplMemoryMB int64) (float64, int64) {
	return firstNonZero(tplCPUs, t.cpus), firstNonZero(tplMemoryMB, t.memoryMB)
}
