// Package rawbox prepares OCI bundles for the benchmarks' raw-runtime
// baselines: the base template's root filesystem through an overlay, the way
// sbx assembles a sandbox's, under runc's default spec or sbx's own (read
// from a live sandbox's bundle) with what ties it to that sandbox removed.
package rawbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/tests/harness"
)

// The runtimes as scripts/setup.sh installs them.
const (
	RuncBin  = "/usr/local/lib/sbx/runc"
	RunscBin = "/usr/local/lib/sbx/runsc"
)

// Box is a prepared bundle.
type Box struct {
	// Bundle is the bundle directory (config.json and rootfs).
	Bundle string
	// Upper is the overlay's upper layer: what the box writes appears
	// there on the host.
	Upper string
	// Root is a runtime state directory (--root) for the box's runtime.
	Root string
}

// New prepares a bundle in dir, an empty directory, whose process runs args
// as the spec's user. With specFrom empty it uses runc's default spec
// (namespaces, no seccomp profile, runc's default capabilities); otherwise
// the OCI spec in that file, with only the process's arguments, the root,
// the cgroup path and namespace paths replaced, and the mounts of sbx's own
// (the agent's, and binds from sbx's data directory) dropped. Close
// unmounts it.
func New(dir, specFrom string, args []string) (*Box, error) {
	lower := filepath.Join(harness.TemplatesDir(), "base", "rootfs")
	b := &Box{Bundle: filepath.Join(dir, "bundle"), Upper: filepath.Join(dir, "upper"), Root: filepath.Join(dir, "root")}
	work, rootfs := filepath.Join(dir, "work"), filepath.Join(b.Bundle, "rootfs")
	for _, d := range []string{b.Upper, work, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// With sbx's spec the box runs in a user namespace: as sbx does, make
	// the path searchable and give the upper layer's root to the box's root.
	for _, d := range []string{dir, b.Bundle} {
		os.Chmod(d, 0o711)
	}
	if specFrom != "" {
		var sp struct {
			Linux struct {
				UIDMappings []struct {
					HostID int `json:"hostID"`
				} `json:"uidMappings"`
			} `json:"linux"`
		}
		raw, _ := os.ReadFile(specFrom)
		json.Unmarshal(raw, &sp)
		if m := sp.Linux.UIDMappings; len(m) > 0 {
			os.Lchown(b.Upper, m[0].HostID, m[0].HostID)
		}
	}
	if err := unix.Mount("overlay", rootfs, "overlay", 0, "lowerdir="+lower+",upperdir="+b.Upper+",workdir="+work); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	// A sandbox's spec lies in DATA/sandboxes/ID/bundle: binds from DATA
	// (its /tmp) are that sandbox's own.
	dataDir := ""
	if specFrom != "" {
		dataDir = filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(specFrom))))
	}
	if specFrom == "" {
		cmd := exec.Command(RuncBin, "spec")
		cmd.Dir = b.Bundle
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Close()
			return nil, fmt.Errorf("runc spec: %v %s", err, out)
		}
		specFrom = filepath.Join(b.Bundle, "config.json")
	}
	if err := b.writeSpec(specFrom, dataDir, filepath.Base(dir), args); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Box) writeSpec(specFrom, dataDir, name string, args []string) error {
	var spec map[string]any
	raw, err := os.ReadFile(specFrom)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fmt.Errorf("%s: %w", specFrom, err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = args
	spec["root"] = map[string]any{"path": "rootfs", "readonly": false}
	if mounts, ok := spec["mounts"].([]any); ok {
		var keep []any
		for _, m := range mounts {
			mm := m.(map[string]any)
			d, _ := mm["destination"].(string)
			src, _ := mm["source"].(string)
			if strings.HasPrefix(d, "/.sbx/") || dataDir != "" && strings.HasPrefix(src, dataDir+"/") {
				continue
			}
			keep = append(keep, m)
		}
		spec["mounts"] = keep
	}
	if l, ok := spec["linux"].(map[string]any); ok {
		// Fresh namespaces: the sandbox's own (its network namespace,
		// say) are not the raw box's.
		if nss, ok := l["namespaces"].([]any); ok {
			for _, ns := range nss {
				delete(ns.(map[string]any), "path")
			}
		}
		l["cgroupsPath"] = "/sbx-bench/" + name
	}
	out, _ := json.Marshal(spec)
	return os.WriteFile(filepath.Join(b.Bundle, "config.json"), out, 0o644)
}

// Close unmounts the box's root filesystem.
func (b *Box) Close() {
	unix.Unmount(filepath.Join(b.Bundle, "rootfs"), unix.MNT_DETACH)
}

// RemoveCgroupParent removes the parent cgroup of raw boxes (the runtimes
// remove each box's own).
func RemoveCgroupParent() {
	hs, _ := filepath.Glob("/sys/fs/cgroup/*/sbx-bench")
	for _, h := range append(hs, "/sys/fs/cgroup/sbx-bench") {
		os.Remove(h)
	}
}
