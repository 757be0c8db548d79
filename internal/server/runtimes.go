package server

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/sbxdev/sbx/internal/runtime/runc"
	"github.com/sbxdev/sbx/internal/sandbox"
)

// runtimes sets up every runtime this server can run sandboxes on, by name,
// in mcfg. runc is required: without it the server does not start. A
// runtime that cannot be set up otherwise is listed in
// mcfg.UnavailableRuntimes with the reason, so that a create asking for it
// gets that reason.
func runtimes(mcfg *sandbox.Config, cfg Config, log *slog.Logger) error {
	mcfg.Runtimes, mcfg.UnavailableRuntimes = map[string]sandbox.Runtime{}, map[string]string{}
	mcfg.RuntimeName = cfg.Runtime
	if mcfg.RuntimeName == "" {
		mcfg.RuntimeName = "runc"
	}
	rc, err := runc.New(runc.Options{Binary: cfg.RuncPath, Root: filepath.Join(cfg.DataDir, "runc"), Logger: log})
	if err != nil {
		return fmt.Errorf("runtime runc: %w", err)
	}
	mcfg.Runtimes["runc"] = rc
	return nil
}
