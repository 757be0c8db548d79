package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
