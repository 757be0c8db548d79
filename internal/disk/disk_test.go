package disk

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiskPoolCloseLeavesNoMount: a disk recycled just before the pool
// closes (its wipe still running) is destroyed, not left mounted in the
// data directory as a spare nobody will use.
func TestDiskPoolCloseLeavesNoMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the disk pool formats and mounts disks: run as root")
	}
	for round := 0; round < 5; round++ {
		data := t.TempDir()
		p, err := NewPool(data, 64, 1, 4, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		d, err := p.Take(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(data, "sandbox")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		sd, err := d.MoveInto(dir)
		if err != nil {
			t.Fatal(err)
		}
		// Something for the wipe to do, so that it is still at work when
		// the pool closes.
		for i := 0; i < 2000; i++ {
			if err := os.WriteFile(filepath.Join(sd.mount, "upper", fmt.Sprint(i)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if !p.Recycle(dir) {
			t.Fatal("the pool did not take the disk back")
		}
		p.Close()
		mi, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], data+"/") {
				t.Fatalf("round %d: %s still mounted after the pool closed", round, f[4])
			}
		}
		if p.Recycle(dir) {
			t.Fatal("a closed pool took a disk")
		}
	}
}
