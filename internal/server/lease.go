package server

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/internal/store"
)

// Node leases: each server renews its row in the nodes table every
// leaseRenew; a node not renewed within leaseTTL is shown unhealthy.
const (
	leaseRenew = 5 * time.Second
	leaseTTL   = 15 * time.Second
)

// nodeLease keeps this server's membership record.
type nodeLease struct {
	db      *store.DB
	node    store.Node
	dataDir string
	log     *slog.Logger
	cpu     cpuSampler
	// renewedOK is the UnixNano of the last renewal that reached the
	// store (0 before the first): fenced reads it from any goroutine.
	renewedOK atomic.Int64
	// rejoin, when set, is called by a renewal that finds this node
	// declared lost, before the declaration is cleared: it kills the
	// boxes of the sandboxes the fleet ended meanwhile.
	rejoin func(ctx context.Context) error
	// measure, when set, adds to each renewal's machine what the node
	// holds for placement: its templates and its pooled sandboxes.
	measure func(ctx context.Context, m *store.NodeMachine)
}

func newNodeLease(db *store.DB, name, dataDir string, log *slog.Logger) *nodeLease {
	l := &nodeLease{db: db, dataDir: dataDir, log: log}
	l.node = store.Node{ID: name, StartedAt: time.Now().UTC()}
	l.node.Version, l.node.Commit = buildVersion()
	return l
}

// renew measures the machine and moves the lease on by leaseTTL.
func (l *nodeLease) renew(ctx context.Context) error {
	now := time.Now().UTC()
	l.node.RenewedAt, l.node.LeaseUntil = now, now.Add(leaseTTL)
	l.node.Machine = measureMachine(l.dataDir, &l.cpu)
	if l.measure != nil {
		l.measure(ctx, &l.node.Machine)
	}
	l.node.ReleasedAt = time.Time{}
	if err := l.db.RenewNode(ctx, &l.node); err != nil {
		return err
	}
	// A node declared lost stays fenced until it has killed the boxes
	// of the sandboxes the fleet ended.
	if lost := l.node.LostAt; !lost.IsZero() {
		l.log.Warn("this node was declared lost while away; killing the boxes of the sandboxes the fleet ended", "node", l.node.ID, "lost_at", lost, "lost_by", l.node.LostBy)
		if l.rejoin != nil {
			// Killing boxes may outlast a renewal's deadline.
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			err := l.rejoin(kctx)
			cancel()
			if err != nil {
				return fmt.Errorf("settle after loss: %w", err)
			}
		}
		if err := l.db.ClearNodeLost(ctx, l.node.ID, lost); err != nil {
			return err
		}
		l.node.LostAt, l.node.LostBy = time.Time{}, ""
	}
	l.renewedOK.Store(now.UnixNano())
	return nil
}

// fenced reports whether this node has gone a whole lease period without
// renewing: the fleet may have declared it lost and ended its sandboxes,
// so it must not act on them until a renewal tells it where it stands.
func (l *nodeLease) fenced() bool {
	ok := l.renewedOK.Load()
	return ok != 0 && time.Since(time.Unix(0, ok)) >= leaseTTL
}

// run renews the lease every leaseRenew until ctx ends, then gives it up.
func (l *nodeLease) run(ctx context.Context) {
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.release()
			return
		case <-t.C:
			// A renewal that cannot finish before the next is due
			// (the store unreachable) gives up, so the next one tries
			// afresh once the store is back.
			rctx, cancel := context.WithTimeout(ctx, leaseRenew)
			err := l.renew(rctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				l.log.Warn("renew node lease", "node", l.node.ID, "err", err)
			}
		}
	}
}

// release ends the lease now, so that other nodes see this one gone at
// once rather than after leaseTTL.
func (l *nodeLease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.db.ReleaseNode(ctx, l.node.ID, time.Now().UTC()); err != nil {
		l.log.Warn("release node lease", "node", l.node.ID, "err", err)
	}
}

// buildVersion returns the module version and VCS revision of this build.
func buildVersion() (version, commit string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", ""
	}
	version = bi.Main.Version
	if version == "" || version == "(devel)" {
		version = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			commit = s.Value
		}
	}
	return version, commit
}

// cpuSampler turns /proc/stat's cumulative CPU times into the busy share
// since the previous sample.
type cpuSampler struct{ busy, total uint64 }

func (c *cpuSampler) percent() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var total, idle uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	busy := total - idle
	var pct int64
	if total > c.total {
		pct = int64(100 * (busy - c.busy) / (total - c.total))
	}
	c.busy, c.total = busy, total
	return pct
}

// measureMachine reads what /proc and statfs say of this host.
func measureMachine(dataDir string, cpu *cpuSampler) store.NodeMachine {
	m := store.NodeMachine{CPUCount: int64(runtime.NumCPU()), CPUArchitecture: runtime.GOARCH, CPUPercent: cpu.percent()}
	mem := procKV("/proc/meminfo", ":")
	kib := func(k string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSuffix(mem[k], " kB"), 10, 64)
		return n
	}
	m.MemoryTotalBytes = kib("MemTotal") << 10
	m.MemoryUsedBytes = (kib("MemTotal") - kib("MemAvailable")) << 10
	m.HugePagesTotal, m.HugePagesFree, m.HugePagesRsvd = kib("HugePages_Total"), kib("HugePages_Free"), kib("HugePages_Rsvd")
	m.HugePageSize = kib("Hugepagesize") << 10
	info := procKV("/proc/cpuinfo", ":")
	m.CPUFamily, m.CPUModel, m.CPUModelName = info["cpu family"], info["model"], info["model name"]
	var st syscall.Statfs_t
	if err := syscall.Statfs(dataDir, &st); err == nil {
		d := store.NodeDisk{TotalBytes: int64(st.Blocks) * st.Bsize, UsedBytes: int64(st.Blocks-st.Bfree) * st.Bsize}
		d.MountPoint, d.Device, d.FilesystemType = mountOf(dataDir)
		m.Disks = []store.NodeDisk{d}
	}
	return m
}

// procKV reads the first "key SEP value" of each key in a /proc file.
func procKV(path, sep string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		k = strings.TrimSpace(k)
		if _, seen := out[k]; ok && !seen {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// mountOf returns the mount point, device and filesystem type of the
// mount holding path, from /proc/self/mountinfo.
func mountOf(path string) (mountPoint, device, fsType string) {
	path, _ = filepath.Abs(path)
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return path, "", ""
	}
	mountPoint = "/"
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		mp := f[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(mountPoint) {
			mountPoint, fsType, device = mp, g[0], g[1]
		}
	}
	return mountPoint, device, fsType
}
