package server

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/sbxdev/sbx/internal/runtime/bundle"
	"github.com/sbxdev/sbx/internal/runtime/runc"
	"github.com/sbxdev/sbx/internal/runtime/runsc"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
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
	// Nodes sharing a store may share a host (the tests' fleets do): each
	// keeps its boxes' cgroups under its own parent, so that none finds,
	// reads or removes another's box of the same id.
	var cg bundle.Cgroups
	if store.IsPostgres(cfg.Store) {
		cg = bundle.NodeCgroups(cfg.Node)
	}
	mcfg.CgroupParent = cg.Parent
	rc, err := runc.New(runc.Options{Binary: cfg.RuncPath, Root: filepath.Join(cfg.DataDir, "runc"), Logger: log, Cgroups: cg})
	if err != nil {
		return fmt.Errorf("runtime runc: %w", err)
	}
	mcfg.Runtimes["runc"] = rc
	rs, err := runsc.New(runsc.Options{Binary: cfg.RunscPath, Root: filepath.Join(cfg.DataDir, "runsc"), Logger: log, Cgroups: cg})
	if err != nil {
		// Optional: sbx serves runc sandboxes without it, and says why a
		// create asking for runsc is refused.
		log.Warn("runtime runsc is not available", "err", err)
		mcfg.UnavailableRuntimes["runsc"] = err.Error()
	} else {
		mcfg.Runtimes["runsc"] = rs
	}
	return nil
}
