package server

import (
	"context"
	"log/slog"

	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/template"
)

// startTemplatePools starts the per-template warm pools
// (--warm-pool-template): at once for a template that is not built in, after
// building it (in the background, minutes on a bare host) for one that is.
func startTemplatePools(ctx context.Context, mgr *sandbox.Manager, templates *template.Store, log *slog.Logger) {
	for _, name := range mgr.Warm().Templates() {
		if !template.IsBuiltin(name) {
			mgr.Warm().StartTemplate(name)
			continue
		}
		go func() {
			if err := templates.EnsureBuiltin(ctx, name, nil); err != nil {
				log.Error("warm pool: build its built-in template", "template", name, "err", err)
				return
			}
			mgr.Warm().StartTemplate(name)
		}()
	}
}

// removeStaleBuiltins removes the built-in templates that an older sbx built
// from another spec (template.Store.BuiltinStale), so that their next use
// builds them with this sbx's packages. One that sandboxes or snapshots
// still use is kept, with a warning: it goes once they are gone and it is
// removed by hand (`sbx template rm NAME`).
func removeStaleBuiltins(ctx context.Context, mgr *sandbox.Manager, templates *template.Store, log *slog.Logger) {
	for _, name := range template.Builtins() {
		stale, err := templates.BuiltinStale(name)
		if err != nil {
			log.Error("check built-in template", "template", name, "err", err)
			continue
		}
		if !stale {
			continue
		}
		if err := mgr.Templates().Remove(ctx, name, templates.Remove); err != nil {
			log.Warn("built-in template is out of date but cannot be removed; remove it once unused to have it rebuilt", "template", name, "err", err)
			continue
		}
		log.Info("removed out-of-date built-in template; its next use builds it again", "template", name)
	}
	// Retired bases are not removed here: this server's records are not
	// all their users when other servers share the templates directory
	// (as tests do), and a box running over one must keep its files.
	retired, err := templates.RetiredBases(ctx)
	if err != nil {
		log.Error("list retired base templates", "err", err)
	}
	for _, name := range retired {
		log.Info("retired base template kept for what was made from it; remove it with `sbx template rm` once unused", "template", name)
	}
}

// retireBase retires the base template when an older sbx built it from
// another definition (template.Store.RetireBase): the sandboxes,
// snapshots and templates made from it keep it under its retired name,
// and the base is built again. A failure keeps the old base, logged.
func retireBase(ctx context.Context, mgr *sandbox.Manager, templates *template.Store, log *slog.Logger) {
	retired, err := templates.RetireBase(ctx, mgr.Templates().Retarget)
	if err != nil {
		log.Error("the base template is out of date but could not be retired; using it as it is", "err", err)
		return
	}
	if retired != "" {
		log.Info("retired out-of-date base template; building it again", "retired_as", retired)
	}
}
