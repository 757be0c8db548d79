package server

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

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
		SentBytes:   sent,
		PausedBytes: func(id string) int64 { return keptBytes(filepath.Join(cfg.DataDir, "sandboxes", id)) },
		Interval:    cfg.MetricsInterval,
		Meters:      meters,
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

// keptBytes is the space a paused sandbox's directory takes on this node's
// disk: the blocks allocated to its files (its sparse disk image counts
// what it holds, not its size; the image's mount is not walked again) and
// its memory image.
func keptBytes(dir string) int64 {
	var n int64
	hasDisk := false
	if _, err := os.Stat(filepath.Join(dir, disk.Image)); err == nil {
		hasDisk = true
	}
	mount := filepath.Join(dir, disk.MountDir)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && hasDisk && p == mount {
			return filepath.SkipDir
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}
