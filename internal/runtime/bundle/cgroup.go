package bundle

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CgroupPath is box id's cgroup, relative to the cgroup mounts: the spec's
// cgroupsPath, which runc and runsc both place the box's host processes in.
func CgroupPath(id string) string { return "/sbx/" + id }

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
