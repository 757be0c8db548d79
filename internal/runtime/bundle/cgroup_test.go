package bundle

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUsageFiles reads cgroup v2 and v1 files as the kernel writes them.
func TestUsageFiles(t *testing.T) {
	v2 := t.TempDir()
	writeFiles(t, v2, map[string]string{
		"cpu.stat":       "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
		"memory.current": "104857600\n",
		"memory.stat":    "anon 73400320\nfile 31457280\nactive_file 10485760\ninactive_file 20971520\nshmem 0\n",
	})
	u, err := usageV2(v2)
	if err != nil {
		t.Fatal(err)
	}
	if u.CPUNanos != 1_500_000_000 || u.MemoryBytes != 100<<20 || u.CacheBytes != 30<<20 || u.InactiveFileBytes != 20<<20 {
		t.Fatalf("v2: %+v", u)
	}

	cpu, mem := t.TempDir(), t.TempDir()
	writeFiles(t, cpu, map[string]string{"cpuacct.usage": "2500000000\n"})
	writeFiles(t, mem, map[string]string{
		"memory.usage_in_bytes": "52428800\n",
		"memory.stat":           "cache 8388608\nrss 41943040\ntotal_cache 8388608\ntotal_active_file 4194304\ntotal_inactive_file 2097152\n",
	})
	u, err = usageV1(cpu, mem)
	if err != nil {
		t.Fatal(err)
	}
	if u.CPUNanos != 2_500_000_000 || u.MemoryBytes != 50<<20 || u.CacheBytes != 6<<20 || u.InactiveFileBytes != 2<<20 {
		t.Fatalf("v1: %+v", u)
	}
	if _, err := usageV1(filepath.Join(cpu, "gone"), mem); err == nil {
		t.Fatal("no error for a missing cgroup")
	}
}
