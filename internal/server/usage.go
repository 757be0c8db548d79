package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/sbxdev/sbx/internal/api"
	"github.com/sbxdev/sbx/internal/disk"
	"github.com/sbxdev/sbx/internal/network"
	"github.com/sbxdev/sbx/internal/sandbox"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/internal/usage"
)

// startSampler starts sampling the running sandboxes' use of resources
// (internal/usage) and returns the function that stops it.
func startSampler(ctx context.Context, cfg Config, runtimes map[string]sandbox.Runtime, netw *network.Network, db *store.DB, log *slog.Logger) func() {
	meters := map[string]usage.Meter{}
	for name, rt := range runtimes {
		if m, ok := rt.(usage.Meter); ok {
			meters[name] = m
		}
	}
	var sent func(string) (int64, bool)
	if netw != nil {
		sent = netw.SentBytes
	}
	s := usage.New(usage.Config{
		SentBytes: sent,
		Interval:  cfg.MetricsInterval,
		Meters:    meters,
		// A sandbox's disk is mounted in its directory (internal/sandbox).
		DiskDir: func(id string) string { return filepath.Join(cfg.DataDir, "sandboxes", id, disk.MountDir) },
		Team:    api.DefaultTeam,
	}, db, log)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Run(ctx)
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}
