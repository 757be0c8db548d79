package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sbxdev/sbx/internal/sandbox"
)

// CgroupPath is box id's cgroup, relative to the cgroup mounts: the spec's
// cgroupsPath, which runc and runsc both place the box's host processes in.
func CgroupPath(id string) string { return "/sbx/" + id }

// backgroundShares is the v1 cpu.shares of a box started in the background
// (BoxSpec.Background): the kernel's minimum.
const backgroundShares = 2

// Foreground gives box id's cgroup the default CPU weight (cpu.weight 100 on
// cgroup v2, cpu.shares 1024 on v1), as a box started without
// BoxSpec.Background has.
func Foreground(id string) error {
	var p, v string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		p, v = filepath.Join("/sys/fs/cgroup", CgroupPath(id), "cpu.weight"), "100"
	} else {
		p, v = filepath.Join("/sys/fs/cgroup/cpu", CgroupPath(id), "cpu.shares"), "1024"
	}
	// No such file: the cpu controller is not enabled there, so no
	// weight was set either.
	if err := os.WriteFile(p, []byte(v), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cpu weight of %s: %w", id, err)
	}
	return nil
}

// MemoryUsage reads the memory box id's cgroup is charged for (its
// processes, and for gVisor the Sentry's and gofer's), on cgroup v2
// (memory.current) or v1 (memory.usage_in_bytes).
func MemoryUsage(id string) (int64, error) {
	var p string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		p = filepath.Join("/sys/fs/cgroup", CgroupPath(id), "memory.current")
	} else {
		p = filepath.Join("/sys/fs/cgroup/memory", CgroupPath(id), "memory.usage_in_bytes")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("memory usage of %s: %w", id, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memory usage of %s: %s: %w", id, p, err)
	}
	return n, nil
}

// Usage reads what box id's cgroup has used so far: its CPU time and the
// memory charged to it (for gVisor, the Sentry's and gofer's, which hold
// the box's memory), on cgroup v2 or v1. The box's processes are in the
// same cgroup under runc and runsc, so one reader serves both.
func Usage(id string) (sandbox.BoxUsage, error) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return usageV2(filepath.Join("/sys/fs/cgroup", CgroupPath(id)))
	}
	return usageV1(filepath.Join("/sys/fs/cgroup/cpuacct", CgroupPath(id)), filepath.Join("/sys/fs/cgroup/memory", CgroupPath(id)))
}

func usageV2(dir string) (sandbox.BoxUsage, error) {
	var u sandbox.BoxUsage
	cpu, err := readKeyed(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return u, err
	}
	u.CPUNanos = uint64(cpu["usage_usec"]) * 1000
	if u.MemoryBytes, err = readInt(filepath.Join(dir, "memory.current")); err != nil {
		return u, err
	}
	mem, err := readKeyed(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return u, err
	}
	u.CacheBytes = mem["active_file"] + mem["inactive_file"]
	u.InactiveFileBytes = mem["inactive_file"]
	return u, nil
}

func usageV1(cpuDir, memDir string) (sandbox.BoxUsage, error) {
	var u sandbox.BoxUsage
	// cpu and cpuacct are one hierarchy on most hosts (cpu,cpuacct) and
	// two on some; the cpuacct path reaches either.
	ns, err := readInt(filepath.Join(cpuDir, "cpuacct.usage"))
	if err != nil {
		return u, err
	}
	u.CPUNanos = uint64(ns)
	if u.MemoryBytes, err = readInt(filepath.Join(memDir, "memory.usage_in_bytes")); err != nil {
		return u, err
	}
	mem, err := readKeyed(filepath.Join(memDir, "memory.stat"))
	if err != nil {
		return u, err
	}
	// total_ counts the cgroup's children too (runsc may make some).
	u.CacheBytes = mem["total_active_file"] + mem["total_inactive_file"]
	u.InactiveFileBytes = mem["total_inactive_file"]
	return u, nil
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup: %s: %w", p, err)
	}
	return n, nil
}

// readKeyed reads a cgroup file of "key value" lines.
func readKeyed(p string) (map[string]int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m, nil
}
