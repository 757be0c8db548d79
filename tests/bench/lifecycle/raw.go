package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sbxdev/sbx/tests/bench/rawbox"
)

// The flags sbx gives a runsc box, but no network: a raw box has no
// network namespace of sbx's making.
var rawRunscFlags = []string{"--shared-root", "/run/sbx/runsc", "--platform", "systrap", "--host-uds", "create", "--network", "none", "--overlay2", "none"}

// holderArgs is a box init that touches mib MiB, says so in /held and keeps
// them.
func holderArgs(mib int) []string {
	return []string{"/usr/bin/python3", "-c", holderProgram(mib, "/held")}
}

// holderProgram is a Python program that touches mib MiB, writes their size
// to file and keeps them.
func holderProgram(mib int, file string) string {
	return fmt.Sprintf(`
import time
b = bytearray(%d << 20)
for i in range(0, len(b), 4096):
    b[i] = 7
open(%q, "w").write(str(len(b)))
while True:
    time.sleep(3600)
`, mib, file)
}

// rawRunscBox starts a raw runsc box (sbx's spec from specFrom, its init the
// memory holder) and waits until it holds its memory.
func rawRunscBox(specFrom, id string, mib int) *rawbox.Box {
	box, err := rawbox.New(tb.TempDir(), specFrom, holderArgs(mib))
	if err != nil {
		fatal(err)
	}
	tb.Cleanup(box.Close)
	tb.Cleanup(func() { exec.Command(rawbox.RunscBin, "--root", box.Root, "delete", "--force", id).Run() })
	runsc(box, "run", "--detach", "--bundle", box.Bundle, id)
	for i := 0; ; i++ {
		if b, _ := os.ReadFile(filepath.Join(box.Upper, "held")); string(b) == fmt.Sprint(mib<<20) {
			return box
		}
		if i == 1200 {
			fatalf("raw runsc box %s never held its memory", id)
		}
		time.Sleep(50 * time.Millisecond) // a file the box writes: no event to wait on
	}
}

// runsc runs runsc on box and returns its output. The output goes through a
// file, not a pipe: a detached box keeps runsc's stdio as its own.
func runsc(box *rawbox.Box, args ...string) string {
	all := append(append([]string{"--root", box.Root}, rawRunscFlags...), args...)
	f, err := os.CreateTemp("", "raw-runsc-")
	if err != nil {
		fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd := exec.Command(rawbox.RunscBin, all...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	if err != nil {
		fatalf("runsc %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rawRunscPauseResume times runsc's own pause and resume of a raw box
// holding mib MiB, as sbx's driver does them: `runsc checkpoint` into an
// empty image directory then `runsc delete`; `runsc restore --background
// --detach` from it (returns with the box running; it has no agent to
// answer).
func rawRunscPauseResume(specFrom string, mib, n int) (pause, resume []time.Duration) {
	id := fmt.Sprintf("raw-pause-%d", mib)
	box := rawRunscBox(specFrom, id, mib)
	img := filepath.Join(tb.TempDir(), "image")
	for i := 0; i < n; i++ {
		os.RemoveAll(img)
		if err := os.Mkdir(img, 0o700); err != nil {
			fatal(err)
		}
		t0 := time.Now()
		runsc(box, "checkpoint", "--image-path", img, id)
		runsc(box, "delete", "--force", id)
		pause = append(pause, time.Since(t0))
		t0 = time.Now()
		runsc(box, "restore", "--image-path", img, "--background", "--detach", "--bundle", box.Bundle, id)
		resume = append(resume, time.Since(t0))
	}
	if out := runsc(box, "exec", id, "/bin/cat", "/held"); out != fmt.Sprint(mib<<20) {
		fatalf("raw runsc box after restore: %q", out)
	}
	return pause, resume
}

// rawRunscFork times what a fork ×10 is to runsc itself: `runsc checkpoint
// --leave-running` of a raw box holding 16 MiB, then ten `runsc restore`s
// of the image at once, each into a box of its own (own overlay, own
// cgroup), until each has run `echo hi` (`runsc exec`).
func rawRunscFork(specFrom string, rounds int) []time.Duration {
	src := rawRunscBox(specFrom, "raw-fork-src", 16)
	var boxes []*rawbox.Box
	for i := 0; i < 10; i++ {
		box, err := rawbox.New(tb.TempDir(), specFrom, holderArgs(16))
		if err != nil {
			fatal(err)
		}
		tb.Cleanup(box.Close)
		boxes = append(boxes, box)
	}
	var out []time.Duration
	for r := 0; r < rounds; r++ {
		img := filepath.Join(tb.TempDir(), "image")
		if err := os.Mkdir(img, 0o700); err != nil {
			fatal(err)
		}
		t0 := time.Now()
		runsc(src, "checkpoint", "--leave-running", "--image-path", img, "raw-fork-src")
		var wg sync.WaitGroup
		for i, box := range boxes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("raw-fork-%d", i)
				runsc(box, "restore", "--image-path", img, "--background", "--detach", "--bundle", box.Bundle, id)
				if o := runsc(box, "exec", id, "/bin/echo", "hi"); o != "hi\n" {
					fatalf("raw fork %d answered %q", i, o)
				}
			}()
		}
		wg.Wait()
		out = append(out, time.Since(t0))
		for i, box := range boxes {
			runsc(box, "delete", "--force", fmt.Sprintf("raw-fork-%d", i))
		}
		os.RemoveAll(img)
	}
	return out
}
