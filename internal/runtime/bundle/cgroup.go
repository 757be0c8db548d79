package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/sbxdev/sbx/internal/sandbox"
)

// DefaultCgroupParent is the cgroup a lone server's boxes go under.
const DefaultCgroupParent = "/sbx"

// Cgroups names and reads boxes' cgroups under one parent, relative to the
// cgroup mounts: /sbx for a lone server, /sbx/nodes/<node> for a node of a
// fleet, so that several nodes on one host (as in the tests) never share a
// box's cgroup. The zero value is DefaultCgroupParent.
type Cgroups struct {
	// Parent is the cgroup boxes go under (DefaultCgroupParent if empty).
	Parent string
}

// nodeRE bounds node names that become a cgroup path component.
var nodeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidNodeName reports whether node is safe as a path component of its
// boxes' cgroups (no separator, nothing that traverses).
func ValidNodeName(node string) bool { return nodeRE.MatchString(node) && node != "." && node != ".." }

// NodeCgroups is the Cgroups of fleet node node's boxes; node must be
// ValidNodeName.
func NodeCgroups(node string) Cgroups {
	return Cgroups{Parent: DefaultCgroupParent + "/nodes/" + node}
}

// Path is box id's cgroup: the spec's cgroupsPath, which runc and runsc
// both place the box's host processes in.
func (c Cgroups) Path(id string) string {
	if c.Parent == "" {
		return DefaultCgroupParent + "/" + id
	}
	return c.Parent + "/" + id
}

// dir is box id's cgroup directory under the mount root (a controller's
// on v1). A box started before its node's boxes moved under
// /sbx/nodes/<node> is still at /sbx/<id>: that one is found too.
func (c Cgroups) dir(root, id string) string {
	p := filepath.Join(root, c.Path(id))
	if c.Parent != "" && c.Parent != DefaultCgroupParent {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			if old := filepath.Join(root, DefaultCgroupParent, id); fileExists(old) {
				return old
			}
		}
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// backgroundShares is the v1 cpu.shares of a box started in the background
// (BoxSpec.Background): the kernel's minimum.
const backgroundShares = 2

// Foreground gives box id's cgroup the default CPU weight (cpu.weight 100 on
// cgroup v2, cpu.shares 1024 on v1), as a box started without
// BoxSpec.Background has.
func (c Cgroups) Foreground(id string) error {
	var p, v string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		p, v = filepath.Join(c.dir("/sys/fs/cgroup", id), "cpu.weight"), "100"
	} else {
		p, v = filepath.Join(c.dir("/sys/fs/cgroup/cpu", id), "cpu.shares"), "1024"
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
func (c Cgroups) MemoryUsage(id string) (int64, error) {
	var p string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		p = filepath.Join(c.dir("/sys/fs/cgroup", id), "memory.current")
	} else {
		p = filepath.Join(c.dir("/sys/fs/cgroup/memory", id), "memory.usage_in_bytes")
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
func (c Cgroups) Usage(id string) (sandbox.BoxUsage, error) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return usageV2(c.dir("/sys/fs/cgroup", id))
	}
	return usageV1(c.dir("/sys/fs/cgroup/cpuacct", id), c.dir("/sys/fs/cgroup/memory", id))
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
