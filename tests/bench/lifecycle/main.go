// Command lifecycle measures pause, resume and fork on a real sbx serve and
// prints a table of p50/p99 figures:
//
//   - pause and resume of a sandbox holding 100 MiB and 1 GiB of touched
//     memory (a Python process that wrote every page), each resume checked
//     by a command and by the process still holding its memory;
//   - the bytes on disk a paused 100 MiB sandbox takes (its directory: disk
//     image blocks and, on runsc, its memory image);
//   - fork ×10: from the request to all ten copies having answered a
//     command;
//   - beside them, the raw runtime's own: `runc pause/resume` of the same
//     box; on runsc, `runsc checkpoint` + `delete` and `runsc restore
//     --background` of a raw box with sbx's spec whose init holds the same
//     memory (no agent), and a raw fork ×10: `runsc checkpoint
//     --leave-running` and ten `runsc restore`s at once, each followed by
//     `runsc exec echo hi` (see raw.go).
//
// Run it as root on a host prepared by scripts/setup.sh, once per runtime:
//
//	go run ./tests/bench/lifecycle -runtime runsc -n 5
//	go run ./tests/bench/lifecycle -runtime runc -n 5
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/bench/benchutil"
	"github.com/sbxdev/sbx/tests/harness"
)

func main() {
	rt := flag.String("runtime", "runsc", "runtime to measure (runc or runsc)")
	n := flag.Int("n", 5, "pause/resume cycles per size")
	forks := flag.Int("forks", 3, "fork ×10 rounds")
	sizes := flag.String("sizes", "100,1024", "touched memory sizes to pause and resume, in MiB (comma-separated; empty for none)")
	flag.Parse()
	defer tb.Cleanups()
	os.Setenv("SBX_TEST_RUNTIME", *rt)
	srv := harness.Start(tb, "--max-memory-mb", "4096", "--max-fork", "10")
	ctx := context.Background()
	c := srv.Client

	fmt.Printf("runtime %s, %d cycles per size\n\n", *rt, *n)
	fmt.Println("| operation | n | p50 | p99 | raw runtime p50 |")
	fmt.Println("|---|---|---|---|---|")
	for _, f := range strings.FieldsFunc(*sizes, func(r rune) bool { return r == ',' }) {
		size, err := strconv.Atoi(f)
		if err != nil || size <= 0 {
			fatalf("-sizes: %q is not a size in MiB", f)
		}
		sb := must(c.CreateSandbox(ctx, client.CreateOptions{Timeout: client.NoTimeout, MemoryMB: size + 512}))
		hold(ctx, sb, size)
		var pause, resume []time.Duration
		var kind string
		for i := 0; i < *n; i++ {
			t0 := time.Now()
			if err := sb.Pause(ctx, nil); err != nil {
				fatal(err)
			}
			pause = append(pause, time.Since(t0))
			if i == 0 {
				info := must(c.GetSandbox(ctx, sb.ID))
				kind = info.PauseKind
				if size == 100 {
					fmt.Printf("| bytes on disk, paused %d MiB sandbox (%s) | 1 | %s | | |\n", size, kind, mibs(duBytes(filepath.Join(srv.DataDir, "sandboxes", sb.ID))))
				}
			}
			t0 = time.Now()
			sb = must(c.Resume(ctx, sb.ID, &client.ResumeOptions{Timeout: client.NoTimeout}))
			resume = append(resume, time.Since(t0))
			check(ctx, sb, size)
		}
		var rawP, rawR []time.Duration
		if *rt == "runsc" {
			rawP, rawR = rawRunscPauseResume(filepath.Join(srv.DataDir, "sandboxes", sb.ID, "bundle", "config.json"), size, *n)
		}
		if *rt == "runc" {
			for i := 0; i < *n; i++ {
				rawP = append(rawP, timeCmd("/usr/local/lib/sbx/runc", "--root", filepath.Join(srv.DataDir, "runc"), "pause", sb.ID))
				rawR = append(rawR, timeCmd("/usr/local/lib/sbx/runc", "--root", filepath.Join(srv.DataDir, "runc"), "resume", sb.ID))
			}
		}
		fmt.Printf("| pause, %d MiB touched (%s) | %d | %s | %s | %s |\n", size, kind, len(pause), ms(pct(pause, 50)), ms(pct(pause, 99)), rawFig(rawP))
		fmt.Printf("| resume → agent answers, %d MiB touched (%s) | %d | %s | %s | %s |\n", size, kind, len(resume), ms(pct(resume, 50)), ms(pct(resume, 99)), rawFig(rawR))
		sb.Kill(ctx)
	}

	if *forks == 0 {
		return
	}
	src := must(c.CreateSandbox(ctx, client.CreateOptions{Timeout: client.NoTimeout}))
	hold(ctx, src, 16)
	var fork []time.Duration
	for r := 0; r < *forks; r++ {
		t0 := time.Now()
		res := must(c.Fork(ctx, src.ID, 10, time.Minute))
		var wg sync.WaitGroup
		for _, f := range res {
			if f.Err != nil {
				fatal(f.Err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out := must(f.Sandbox.Run(ctx, "echo hi", nil)); out.Stdout != "hi\n" {
					fatalf("fork answered %q", out.Stdout)
				}
			}()
		}
		wg.Wait()
		fork = append(fork, time.Since(t0))
		for _, f := range res {
			f.Sandbox.Kill(ctx)
		}
	}
	var rawFork []time.Duration
	if *rt == "runsc" {
		rawFork = rawRunscFork(filepath.Join(srv.DataDir, "sandboxes", src.ID, "bundle", "config.json"), *forks)
	}
	fmt.Printf("| fork ×10 → all answered a command | %d | %s | %s | %s |\n", len(fork), ms(pct(fork, 50)), ms(pct(fork, 99)), rawFig(rawFork))
	src.Kill(ctx)
}

// hold starts a process in sb that touches mib MiB and keeps it.
func hold(ctx context.Context, sb *client.Sandbox, mib int) {
	script := fmt.Sprintf(`setsid nohup python3 -c '%s' >/dev/null 2>&1 &
for i in $(seq 600); do [ -s /tmp/held ] && exit 0; sleep 0.05; done; exit 1`, holderProgram(mib, "/tmp/held"))
	if res := must(sb.Run(ctx, script, nil)); res.ExitCode != 0 {
		fatalf("memory holder did not start: %+v", res)
	}
}

// check makes sure the memory holder is still alive after a resume.
func check(ctx context.Context, sb *client.Sandbox, mib int) {
	res := must(sb.Run(ctx, "pgrep -f 'bytearray' >/dev/null && cat /tmp/held", nil))
	if res.Stdout != fmt.Sprint(mib<<20) {
		fatalf("after resume the memory holder is gone: %+v", res)
	}
}

func timeCmd(name string, args ...string) time.Duration {
	t0 := time.Now()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return time.Since(t0)
}

// duBytes is the disk space the files under dir take, not crossing into
// filesystems mounted below it (a running sandbox's rootfs and disk: the
// disk's image file is counted once, as a file of dir).
func duBytes(dir string) int64 {
	var root syscall.Stat_t
	if err := syscall.Stat(dir, &root); err != nil {
		fatal(err)
	}
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Dev != root.Dev {
			return filepath.SkipDir
		}
		n += st.Blocks * 512
		return nil
	})
	return n
}

func rawFig(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	return ms(pct(ds, 50))
}

func mibs(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

var ms, pct = benchutil.MS, benchutil.Pct

func must[T any](v T, err error) T {
	if err != nil {
		fatal(err)
	}
	return v
}

// tb runs the harness outside `go test`; fatal errors go through it so that
// the server and its sandboxes are cleaned up before exiting.
var tb = &benchutil.T{}

func fatal(args ...any)                 { tb.Fatal(args...) }
func fatalf(format string, args ...any) { tb.Fatalf(format, args...) }
