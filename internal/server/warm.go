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
	for _, name := range mgr.WarmTemplates() {
		if !template.IsBuiltin(name) {
			mgr.StartWarmTemplate(name)
			continue
		}
		go func() {
			if err := templates.EnsureBuiltin(ctx, name, nil); err != nil {
				log.Error("warm pool: build its built-in template", "template", name, "err", err)
				return
			}
			mgr.StartWarmTemplate(name)
		}()
	}
}
