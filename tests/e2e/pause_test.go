package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/internal/store"
	"github.com/sbxdev/sbx/tests/harness"
)

// counterScript keeps a counter in memory and writes "pid count" to
// /tmp/counter about 20 times a second: a process that continues after a
// pause has the same pid and a count at least the one it had.
const counterScript = `setsid nohup python3 -c '
import os, time
n = 0
while True:
    n += 1
    with open("/tmp/counter.tmp", "w") as f:
        f.write("%d %d" % (os.getpid(), n))
    os.rename("/tmp/counter.tmp", "/tmp/counter")
    time.sleep(0.05)
' >/dev/null 2>&1 &`

// wantPauseKind is the kind a default pause gets on the suite's runtime.
func wantPauseKind() string {
	if harness.Runtime() == "runsc" {
		return client.PauseMemory
	}
	return client.PauseFrozen
}

func startCounter(t *testing.T, ctx context.Context, sb *client.Sandbox) (pid, n int) {
	t.Helper()
	mustRun(t, ctx, sb, counterScript, nil)
	return awaitCounter(t, ctx, sb, 0, 3)
}

// readCounter returns the counter's pid and count; ok is false while the
// file does not exist yet.
func readCounter(t *testing.T, ctx context.Context, sb *client.Sandbox) (pid, n int, ok bool) {
	t.Helper()
	res := mustRun(t, ctx, sb, "cat /tmp/counter 2>/dev/null || true", nil)
	f := strings.Fields(res.Stdout)
	if len(f) != 2 {
		return 0, 0, false
	}
	pid, _ = strconv.Atoi(f[0])
	n, _ = strconv.Atoi(f[1])
	return pid, n, true
}

// awaitCounter polls until the counter of process pid (any when 0) reaches
// at least min, and returns it.
func awaitCounter(t *testing.T, ctx context.Context, sb *client.Sandbox, pid, min int) (int, int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, n, ok := readCounter(t, ctx, sb)
		if ok && (pid == 0 || p == pid) && n >= min {
			return p, n
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter did not reach %d (pid %d): last pid %d count %d", min, pid, p, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustState(t *testing.T, ctx context.Context, c *client.Client, id, state, kind string) *client.SandboxInfo {
	t.Helper()
	info, err := c.GetSandbox(ctx, id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	if info.State != state || info.PauseKind != kind {
		t.Fatalf("sandbox %s is %s (pause kind %q), want %s (%q)", id, info.State, info.PauseKind, state, kind)
	}
	return info
}

func awaitState(t *testing.T, ctx context.Context, c *client.Client, id, state string, within time.Duration) *client.SandboxInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		info, err := c.GetSandbox(ctx, id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if info.State == state {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s still %s after %s, want %s", id, info.State, within, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPauseResume pauses a sandbox whose process holds a counter in memory
// and checks that the process continues from its value after a resume,
// after a restart of sbx serve while paused, and after connect (which
// resumes), and that wrong-state requests get 409.
func TestPauseResume(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 4*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pid, n := startCounter(t, ctx, sb)
	// The box's limits hold from its start (under runsc the CPU quota is
	// set once the agent listens) and again after its resume.
	mem, cpus := cgroupLimits(t, sb.ID)
	if mem <= 0 || cpus <= 0 {
		t.Fatalf("limits of a new sandbox: %d bytes, %v CPUs", mem, cpus)
	}

	if err := sb.Pause(ctx, nil); err != nil {
		t.Fatalf("pause: %v", err)
	}
	info := mustState(t, ctx, c, sb.ID, client.StatePaused, wantPauseKind())
	if info.Lifecycle == nil || info.Lifecycle.OnTimeout != "kill" {
		t.Errorf("lifecycle = %+v, want onTimeout kill", info.Lifecycle)
	}
	if harness.Runtime() == "runsc" {
		// The agent in the image listens again by itself once restored
		// (gVisor's checkpoint event), not told by a signal.
		if _, err := os.Stat(filepath.Join(srv.DataDir, "sandboxes", sb.ID, "checkpoint", "agent-wakes")); err != nil {
			t.Errorf("the image does not say its agent wakes by itself: %v", err)
		}
	}
	if err := sb.Pause(ctx, nil); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("pause of a paused sandbox = %v, want a conflict (409)", err)
	}
	if _, err := sb.Run(ctx, "true", nil); err == nil {
		t.Fatal("a command ran in a paused sandbox")
	}
	if wantPauseKind() == client.PauseFrozen {
		// Frozen in place: the counter's file does not move.
		f := filepath.Join(srv.DataDir, "sandboxes", sb.ID, "disk", "upper", "tmp", "counter")
		a, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if b, _ := os.ReadFile(f); string(a) != string(b) {
			t.Fatalf("counter moved while frozen: %q then %q", a, b)
		}
	}
	paused, err := c.ListSandboxes(ctx, &client.ListOptions{States: []string{client.StatePaused}})
	if err != nil || len(paused) != 1 || paused[0].SandboxID != sb.ID {
		t.Fatalf("list state=paused = %+v, %v", paused, err)
	}
	running, err := c.ListSandboxes(ctx, &client.ListOptions{States: []string{client.StateRunning}})
	if err != nil || len(running) != 0 {
		t.Fatalf("list state=running = %+v, %v", running, err)
	}

	// A restart of sbx serve leaves it paused.
	srv.Restart()
	mustState(t, ctx, c, sb.ID, client.StatePaused, wantPauseKind())

	sb2, err := c.Resume(ctx, sb.ID, &client.ResumeOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	mustState(t, ctx, c, sb.ID, client.StateRunning, "")
	if m, c := cgroupLimits(t, sb.ID); m != mem || c != cpus {
		t.Errorf("limits after resume: %d bytes, %v CPUs; before the pause %d, %v", m, c, mem, cpus)
	}
	if harness.Runtime() == "runsc" {
		log, _ := os.ReadFile(filepath.Join(srv.DataDir, "sandboxes", sb.ID, "bundle", "agent.log"))
		if !strings.Contains(string(log), `agent listening again: the checkpoint is over" result=restore`) {
			t.Errorf("the restored agent did not wake on the checkpoint's end; its log:\n%s", log)
		}
	}
	if _, err := c.Resume(ctx, sb.ID, nil); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("resume of a running sandbox = %v, want a conflict (409)", err)
	}
	p2, n2, _ := readCounter(t, ctx, sb2)
	if p2 != pid || n2 < n {
		t.Fatalf("after resume the counter is pid %d count %d; before the pause pid %d count %d", p2, n2, pid, n)
	}
	awaitCounter(t, ctx, sb2, pid, n2+3) // and it keeps counting

	// Connect resumes a paused sandbox.
	if err := c.Pause(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, n3, _ := readCounterHost(t, srv, sb.ID)
	if harness.Runtime() == "runsc" {
		// An image without the agent-wakes mark, as older sbx versions
		// wrote them: its agent is told by SIGUSR2, and listens too.
		if err := os.Remove(filepath.Join(srv.DataDir, "sandboxes", sb.ID, "checkpoint", "agent-wakes")); err != nil {
			t.Fatal(err)
		}
	}
	sb3, err := c.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	mustState(t, ctx, c, sb.ID, client.StateRunning, "")
	awaitCounter(t, ctx, sb3, pid, max(n3, n2)+3)

	// A paused sandbox can be killed.
	if err := c.Pause(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatalf("kill paused: %v", err)
	}
	if _, err := c.GetSandbox(ctx, sb.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get after kill = %v, want not found", err)
	}
	if _, err := os.Stat(filepath.Join(srv.DataDir, "sandboxes", sb.ID)); !os.IsNotExist(err) {
		t.Fatalf("sandbox dir left after kill: %v", err)
	}
}

// readCounterHost reads the counter file from the host side of a runc
// sandbox's upper layer (0, 0 when it cannot).
func readCounterHost(t *testing.T, srv *harness.Server, id string) (int, int, bool) {
	b, err := os.ReadFile(filepath.Join(srv.DataDir, "sandboxes", id, "disk", "upper", "tmp", "counter"))
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	p, _ := strconv.Atoi(f[0])
	n, _ := strconv.Atoi(f[1])
	return p, n, true
}

// TestPauseFilesOnly pauses keeping files only (E2B's keepMemory: false):
// the box stops, its disk is unmounted, and resume starts fresh processes
// over the same files, also after a restart of sbx serve.
func TestPauseFilesOnly(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, sb, "echo kept > /home/user/kept.txt", nil)
	pid, _ := startCounter(t, ctx, sb)
	if err := sb.Pause(ctx, &client.PauseOptions{FilesOnly: true}); err != nil {
		t.Fatal(err)
	}
	mustState(t, ctx, c, sb.ID, client.StatePaused, client.PauseFilesystem)
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), filepath.Join(srv.DataDir, "sandboxes", sb.ID)) {
		t.Fatal("a files-only paused sandbox still has mounts")
	}
	srv.Restart()
	mustState(t, ctx, c, sb.ID, client.StatePaused, client.PauseFilesystem)
	sb2, err := c.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, sb2, "cat /home/user/kept.txt; grep -qs 'counter[.]tmp' /proc/"+strconv.Itoa(pid)+"/cmdline && echo alive || echo gone", nil); res.Stdout != "kept\ngone\n" {
		t.Fatalf("after resume: %q, want the file kept and the old process gone", res.Stdout)
	}
}

// boxCmd runs the suite's runtime binary (runc or runsc) on srv's boxes.
func boxCmd(t *testing.T, srv *harness.Server, args ...string) {
	t.Helper()
	rt := harness.Runtime()
	cmd := exec.Command("/usr/local/lib/sbx/"+rt, append([]string{"--root", filepath.Join(srv.DataDir, rt)}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", rt, args, err, out)
	}
}

// simulateHostRestart stops sbx serve and does to sandbox id what a host
// reboot does: its box and its mounts vanish.
func simulateHostRestart(t *testing.T, srv *harness.Server, ids ...string) {
	t.Helper()
	srv.Stop()
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		dir := filepath.Join(srv.DataDir, "sandboxes", id)
		// A sandbox paused with its memory on disk, or its files only,
		// has no box and nothing mounted.
		if !strings.Contains(string(mounts), dir+"/") {
			continue
		}
		boxCmd(t, srv, "delete", "--force", id)
		for _, m := range []string{"rootfs", "disk"} {
			if out, err := exec.Command("umount", "-l", filepath.Join(dir, m)).CombinedOutput(); err != nil {
				t.Fatalf("unmount %s: %v: %s", m, err, out)
			}
		}
	}
	srv.StartAgain()
}

// TestPersistentSurvivesHostRestart: a persistent sandbox whose box is lost
// (a host restart) is paused with its files and starts again with them; an
// ephemeral one in the same situation is failed; a paused one stays paused:
// with its memory where the pause wrote it to disk (runsc), else with its
// files.
func TestPersistentSurvivesHostRestart(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	keep, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute, Lifecycle: client.Lifecycle{Persistent: true}})
	if err != nil {
		t.Fatal(err)
	}
	eph, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	info := mustState(t, ctx, c, keep.ID, client.StateRunning, "")
	if info.Lifecycle == nil || !info.Lifecycle.Persistent || info.Lifecycle.OnTimeout != "pause" {
		t.Fatalf("persistent sandbox lifecycle = %+v", info.Lifecycle)
	}
	paused, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := startCounter(t, ctx, paused)
	mustRun(t, ctx, paused, "echo mine > /home/user/mine", nil)
	if err := paused.Pause(ctx, nil); err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, keep, "mkdir -p /home/user/proj && echo v1 > /home/user/proj/state", nil)
	simulateHostRestart(t, srv, keep.ID, eph.ID, paused.ID)
	mustState(t, ctx, c, keep.ID, client.StatePaused, client.PauseFilesystem)
	afterKind := client.PauseFilesystem
	if wantPauseKind() == client.PauseMemory {
		afterKind = client.PauseMemory
	}
	mustState(t, ctx, c, paused.ID, client.StatePaused, afterKind)
	h, err := c.ConnectSandbox(ctx, paused.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, h, "cat /home/user/mine", nil); res.Stdout != "mine\n" {
		t.Fatalf("paused sandbox after a host restart: %q", res.Stdout)
	}
	if afterKind == client.PauseMemory {
		_, n, _ := readCounter(t, ctx, h)
		awaitCounter(t, ctx, h, pid, n+2) // its process came back
	}
	if info, err := c.GetSandbox(ctx, eph.ID); err != nil || info.State != "failed" {
		t.Fatalf("ephemeral sandbox after a host restart: %+v, %v; want failed", info, err)
	}
	sb, err := c.ConnectSandbox(ctx, keep.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, sb, "cat /home/user/proj/state", nil); res.Stdout != "v1\n" {
		t.Fatalf("after restart: %q", res.Stdout)
	}
	// Stop and start again by hand, too.
	if err := sb.Pause(ctx, &client.PauseOptions{FilesOnly: true}); err != nil {
		t.Fatal(err)
	}
	sb, err = c.Resume(ctx, keep.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, sb, "cat /home/user/proj/state", nil); res.Stdout != "v1\n" {
		t.Fatalf("after stop/start: %q", res.Stdout)
	}
}

// TestAutoPause: a sandbox created with autoPause is paused, not killed, at
// its timeout; one with an idle pause is paused when no request comes and
// resumed by the next request for it.
func TestAutoPause(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	timed, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 3 * time.Second, Lifecycle: client.Lifecycle{AutoPause: true}})
	if err != nil {
		t.Fatal(err)
	}
	idle, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: client.NoTimeout, Lifecycle: client.Lifecycle{IdlePause: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := startCounter(t, ctx, timed)
	info := awaitState(t, ctx, c, timed.ID, client.StatePaused, time.Minute)
	if info.PauseKind != wantPauseKind() || info.Lifecycle.OnTimeout != "pause" {
		t.Fatalf("timed-out sandbox: %+v / %+v", info, info.Lifecycle)
	}
	sb, err := c.ConnectSandbox(ctx, timed.ID, &client.ConnectOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	awaitCounter(t, ctx, sb, pid, 1)

	// Idle: no request for 2 s pauses it (polling the control plane is no
	// activity); a command resumes it.
	mustRun(t, ctx, idle, "echo before > /tmp/idle", nil)
	info = awaitState(t, ctx, c, idle.ID, client.StatePaused, time.Minute)
	if !info.Lifecycle.AutoResume || info.Lifecycle.IdlePause != 2 {
		t.Fatalf("idle sandbox lifecycle: %+v", info.Lifecycle)
	}
	if res := mustRun(t, ctx, idle, "cat /tmp/idle", nil); res.Stdout != "before\n" {
		t.Fatalf("after auto-resume: %q", res.Stdout)
	}
	// Woken by traffic, it keeps the time to live it had: none.
	if info := mustState(t, ctx, c, idle.ID, client.StateRunning, ""); info.HasTimeout() {
		t.Fatalf("auto-resumed sandbox got a time limit: ends %v", info.EndAt)
	}
	// A command that runs longer than the idle period keeps it running.
	mustRun(t, ctx, idle, "sleep 3", nil)
	mustState(t, ctx, c, idle.ID, client.StateRunning, "")
}

// TestSnapshotsAndForks: files written before a snapshot are in sandboxes
// made from it and files written after are not; copies share the snapshot's
// layer and diverge; a snapshot in use cannot be deleted.
func TestSnapshotsAndForks(t *testing.T) {
	srv := harness.Start(t, "--max-fork", "3")
	ctx := ctxFor(t, 4*time.Minute)
	c := srv.Client
	src, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute, Metadata: map[string]string{"role": "src"}})
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, src, "echo before > /home/user/before.txt && rm /etc/motd && mkdir -p /opt/x && echo 1 > /opt/x/f", &client.RunOptions{User: "root"}); res.ExitCode != 0 {
		t.Fatalf("set-up: %+v", res)
	}
	snap, err := c.CreateSnapshot(ctx, src.ID, "first")
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if !strings.HasPrefix(snap.SnapshotID, "snap-") || len(snap.Names) != 1 || snap.Names[0] != "first" || snap.SandboxID != src.ID {
		t.Fatalf("snapshot = %+v", snap)
	}
	mustRun(t, ctx, src, "echo after > /home/user/after.txt", nil)
	mustState(t, ctx, c, src.ID, client.StateRunning, "")

	list, err := c.ListSnapshots(ctx, src.ID)
	if err != nil || len(list) != 1 || list[0].SnapshotID != snap.SnapshotID {
		t.Fatalf("list snapshots = %+v, %v", list, err)
	}
	// By id and by name.
	for _, ref := range []string{snap.SnapshotID, "first"} {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: ref, Timeout: 5 * time.Minute})
		if err != nil {
			t.Fatalf("create from %s: %v", ref, err)
		}
		res := mustRun(t, ctx, sb, "cat /home/user/before.txt /opt/x/f; test -e /home/user/after.txt && echo after; test -e /etc/motd && echo motd; echo new > /home/user/mine.txt", nil)
		if res.Stdout != "before\n1\n" {
			t.Fatalf("sandbox from %s sees %q, want only the files from before the snapshot", ref, res.Stdout)
		}
		if err := c.DeleteSnapshot(ctx, snap.SnapshotID); !errors.Is(err, client.ErrConflict) {
			t.Fatalf("delete snapshot in use = %v, want a conflict", err)
		}
		if err := sb.Kill(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if res := mustRun(t, ctx, src, "test -e /home/user/mine.txt && echo leaked || echo ok", nil); res.Stdout != "ok\n" {
		t.Fatalf("a file written in a copy appeared in the source: %q", res.Stdout)
	}

	// Fork: three copies continue from the source's files and diverge.
	forks, err := c.Fork(ctx, src.ID, 3, 5*time.Minute)
	if err != nil {
		t.Fatalf("fork: %v", err)
	}
	if len(forks) != 3 {
		t.Fatalf("fork returned %d results", len(forks))
	}
	for i, f := range forks {
		if f.Err != nil {
			t.Fatalf("fork %d: %v", i, f.Err)
		}
		mustRun(t, ctx, f.Sandbox, fmt.Sprintf("echo %d > /home/user/who", i), nil)
	}
	for i, f := range forks {
		res := mustRun(t, ctx, f.Sandbox, "cat /home/user/after.txt /home/user/who", nil)
		if res.Stdout != fmt.Sprintf("after\n%d\n", i) {
			t.Fatalf("fork %d sees %q", i, res.Stdout)
		}
		info, err := c.GetSandbox(ctx, f.Sandbox.ID)
		if err != nil || info.Metadata["role"] != "src" {
			t.Fatalf("fork %d info %+v, %v: want the source's metadata", i, info, err)
		}
	}
	// The copies share one read-only layer: one snapshot directory.
	dirs, _ := os.ReadDir(filepath.Join(srv.DataDir, "snapshots"))
	if len(dirs) != 2 {
		t.Fatalf("%d snapshot directories, want 2 (the named one and the fork's)", len(dirs))
	}
	// Fork snapshots are not listed, and go with their last sandbox.
	if list, _ := c.ListSnapshots(ctx, ""); len(list) != 1 {
		t.Fatalf("listed %d snapshots, want 1", len(list))
	}
	for _, f := range forks {
		if err := f.Sandbox.Kill(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if dirs, _ := os.ReadDir(filepath.Join(srv.DataDir, "snapshots")); len(dirs) != 1 {
		t.Fatalf("%d snapshot directories after the forks were killed, want 1", len(dirs))
	}

	// Snapshots outlive their sandbox and go when deleted.
	if err := src.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Template: "first", Timeout: time.Minute})
	if err != nil {
		t.Fatalf("create from a snapshot of a killed sandbox: %v", err)
	}
	// Restarting keeps the snapshot and its sandbox.
	srv.Restart()
	if res := mustRun(t, ctx, sb, "cat /home/user/before.txt", nil); res.Stdout != "before\n" {
		t.Fatalf("after restart: %q", res.Stdout)
	}
	sb.Kill(ctx)
	if err := c.DeleteSnapshot(ctx, "first"); err != nil {
		t.Fatalf("delete snapshot: %v", err)
	}
	if _, err := c.CreateSandbox(ctx, client.CreateOptions{Template: snap.SnapshotID}); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("create from a deleted snapshot = %v, want not found", err)
	}
	if dirs, _ := os.ReadDir(filepath.Join(srv.DataDir, "snapshots")); len(dirs) != 0 {
		t.Fatalf("%d snapshot directories left", len(dirs))
	}
}

// TestLifecycleBadInput: wrong-state and malformed lifecycle requests get
// clear 4xx answers.
func TestLifecycleBadInput(t *testing.T) {
	srv := harness.Start(t, "--max-fork", "2")
	ctx := ctxFor(t, 2*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	paused, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := paused.Pause(ctx, nil); err != nil {
		t.Fatal(err)
	}
	killed, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	killed.Kill(ctx)
	if _, err := c.CreateSnapshot(ctx, sb.ID, "taken"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"resume running", "POST", "/sandboxes/" + sb.ID + "/resume", `{}`, 409, "already running"},
		{"pause paused", "POST", "/sandboxes/" + paused.ID + "/pause", `{}`, 409, "already paused"},
		{"pause unknown", "POST", "/sandboxes/nosuchsandbox00000000/pause", ``, 404, "not found"},
		{"resume unknown", "POST", "/sandboxes/nosuchsandbox00000000/resume", ``, 404, "not found"},
		{"snapshot killed", "POST", "/sandboxes/" + killed.ID + "/snapshots", `{}`, 404, "not found"},
		{"snapshot paused", "POST", "/sandboxes/" + paused.ID + "/snapshots", `{}`, 409, "only a running sandbox"},
		{"snapshot bad name", "POST", "/sandboxes/" + sb.ID + "/snapshots", `{"name":"../x"}`, 400, "snapshot name"},
		{"snapshot name taken", "POST", "/sandboxes/" + sb.ID + "/snapshots", `{"name":"taken"}`, 409, "exists"},
		{"snapshot name of a template", "POST", "/sandboxes/" + sb.ID + "/snapshots", `{"name":"base"}`, 409, "template"},
		{"fork zero", "POST", "/sandboxes/" + sb.ID + "/fork", `{"count":0}`, 400, "between 1 and 2"},
		{"fork over limit", "POST", "/sandboxes/" + sb.ID + "/fork", `{"count":3}`, 400, "between 1 and 2"},
		{"fork negative timeout", "POST", "/sandboxes/" + sb.ID + "/fork", `{"count":1,"timeout":-1}`, 400, "negative"},
		{"fork paused", "POST", "/sandboxes/" + paused.ID + "/fork", `{"count":1}`, 409, "only a running sandbox"},
		{"fork unknown", "POST", "/sandboxes/nosuchsandbox00000000/fork", `{}`, 404, "not found"},
		{"create from unknown snapshot", "POST", "/v2/sandboxes", `{"templateID":"snap-nosuchsnapshot00"}`, 404, "not found"},
		{"delete unknown snapshot", "DELETE", "/templates/snap-nosuchsnapshot00", ``, 404, "not found"},
		{"bad lifecycle", "POST", "/v2/sandboxes", `{"templateID":"base","lifecycle":"forever"}`, 400, "lifecycle"},
		{"autoResume without autoPause", "POST", "/v2/sandboxes", `{"templateID":"base","autoResume":{"enabled":true}}`, 400, "autoResume"},
		{"autoResume with files-only pause", "POST", "/v2/sandboxes", `{"templateID":"base","autoPause":true,"autoPauseMemory":false,"autoResume":{"enabled":true}}`, 400, "files-only"},
		{"negative idle pause", "POST", "/v2/sandboxes", `{"templateID":"base","idlePause":-3}`, 400, "negative"},
		{"pause bad body", "POST", "/sandboxes/" + sb.ID + "/pause", `{"memory":"yes"}`, 400, "memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := rawRequest(t, srv, tc.method, tc.path, tc.body)
			if status != tc.status || !strings.Contains(body, tc.msg) || !strings.Contains(body, fmt.Sprintf(`"code":%d`, tc.status)) {
				t.Fatalf("%s %s = %d %s; want %d with %q", tc.method, tc.path, status, body, tc.status, tc.msg)
			}
		})
	}
	// The sandboxes are as they were.
	mustState(t, ctx, c, sb.ID, client.StateRunning, "")
	mustState(t, ctx, c, paused.ID, client.StatePaused, wantPauseKind())
}

// TestLifecycleFaults: sbx serve dies during a pause or a resume; after a
// restart each sandbox is paused or running (never both, never lost) and
// usable. The interrupted states are set up exactly (the record says
// pausing or resuming, the box is in the state a crash at that step leaves
// it), and real crashes race a pause and a resume.
func TestLifecycleFaults(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	kind := wantPauseKind()
	mk := func() *client.Sandbox {
		sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return sb
	}
	// beforePause: the record says pausing, nothing was done yet (the
	// pause is finished at start).
	// afterPause: the pause completed (frozen, or image written and box
	// stopped), the record still says pausing.
	// midResume: the record says resuming, the box is not back yet.
	// afterResume: the box is back, the record still says resuming.
	// midStop: a files-only pause, interrupted with the box still up.
	beforePause, afterPause, midResume, afterResume, midStop := mk(), mk(), mk(), mk(), mk()
	pids := map[string]int{}
	for _, sb := range []*client.Sandbox{beforePause, afterPause, midResume, afterResume} {
		pids[sb.ID], _ = startCounter(t, ctx, sb)
	}
	mustRun(t, ctx, midStop, "echo kept > /home/user/kept", nil)
	for _, sb := range []*client.Sandbox{afterPause, midResume, afterResume} {
		if err := sb.Pause(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Resume(ctx, afterResume.ID, nil); err != nil {
		t.Fatal(err)
	}

	srv.Crash()
	db, err := store.Open(ctx, filepath.Join(srv.DataDir, "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	set := func(id string, state store.State, kind string) {
		rec, err := db.GetSandbox(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		rec.State, rec.Life.PauseKind = state, kind
		if err := db.PutSandbox(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	set(beforePause.ID, "pausing", kind)
	set(afterPause.ID, "pausing", kind)
	set(midResume.ID, "resuming", kind)
	set(afterResume.ID, "resuming", kind)
	set(midStop.ID, "pausing", client.PauseFilesystem)
	db.Close()
	srv.StartAgain()

	mustState(t, ctx, c, beforePause.ID, client.StatePaused, kind)
	mustState(t, ctx, c, afterPause.ID, client.StatePaused, kind)
	mustState(t, ctx, c, afterResume.ID, client.StateRunning, "")
	mustState(t, ctx, c, midStop.ID, client.StatePaused, client.PauseFilesystem)
	// A frozen box is still there, frozen: the resume is finished. A
	// memory image whose restore did not happen is still there: the
	// resume is undone.
	if kind == client.PauseFrozen {
		mustState(t, ctx, c, midResume.ID, client.StateRunning, "")
	} else {
		mustState(t, ctx, c, midResume.ID, client.StatePaused, kind)
	}
	for _, sb := range []*client.Sandbox{beforePause, afterPause, midResume, afterResume} {
		h, err := c.ConnectSandbox(ctx, sb.ID, nil)
		if err != nil {
			t.Fatalf("connect %s: %v", sb.ID, err)
		}
		_, n, _ := readCounter(t, ctx, h)
		awaitCounter(t, ctx, h, pids[sb.ID], n+2)
	}
	h, err := c.ConnectSandbox(ctx, midStop.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, h, "cat /home/user/kept", nil); res.Stdout != "kept\n" {
		t.Fatalf("interrupted files-only pause: %q", res.Stdout)
	}

	// Real SIGKILLs racing a pause and then a resume. Whatever step they
	// cut, the sandbox is paused or running, resumes, runs commands and
	// has its files (a checkpoint cut short may cost its processes: it then
	// keeps its files).
	sb := beforePause
	mustRun(t, ctx, sb, "echo survives > /home/user/survives", nil)
	for _, delay := range []time.Duration{0, 20 * time.Millisecond, 80 * time.Millisecond, 300 * time.Millisecond} {
		done := make(chan error, 1)
		go func() {
			_, err := c.GetSandbox(context.Background(), sb.ID)
			if err == nil {
				err = c.Pause(context.Background(), sb.ID, nil)
			}
			done <- err
		}()
		time.Sleep(delay)
		srv.Crash()
		<-done
		srv.StartAgain()
		info, err := c.GetSandbox(ctx, sb.ID)
		if err != nil || (info.State != client.StateRunning && info.State != client.StatePaused) {
			t.Fatalf("after a crash %v into a pause: %+v, %v", delay, info, err)
		}
		if info.State == client.StateRunning {
			if err := c.Pause(ctx, sb.ID, nil); err != nil {
				t.Fatalf("pause after a crash %v: %v", delay, err)
			}
		}
		go func() {
			_, err := c.ConnectSandbox(context.Background(), sb.ID, nil)
			done <- err
		}()
		time.Sleep(delay)
		srv.Crash()
		<-done
		srv.StartAgain()
		info, err = c.GetSandbox(ctx, sb.ID)
		if err != nil || (info.State != client.StateRunning && info.State != client.StatePaused) {
			t.Fatalf("after a crash %v into a resume: %+v, %v", delay, info, err)
		}
		h, err := c.ConnectSandbox(ctx, sb.ID, nil)
		if err != nil {
			t.Fatalf("connect after a crash %v into a resume: %v", delay, err)
		}
		if res := mustRun(t, ctx, h, "cat /home/user/survives", nil); res.Stdout != "survives\n" {
			t.Fatalf("after a crash %v: files %q", delay, res.Stdout)
		}
	}
}

// rawRequest sends an authenticated control-plane request and returns its
// status and body.
func rawRequest(t *testing.T, srv *harness.Server, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", srv.APIKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestForkProcesses forks a sandbox whose process holds a counter in
// memory into 3 copies. On runsc (memory snapshots) the process continues
// in every copy from the value it had, and the copies then diverge; on
// runc (files only) the copies have the files and no process.
func TestForkProcesses(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 4*time.Minute)
	c := srv.Client
	src, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := startCounter(t, ctx, src)
	_, before, _ := readCounter(t, ctx, src)
	forks, err := c.Fork(ctx, src.ID, 3, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The source goes on.
	awaitCounter(t, ctx, src, pid, before+5)
	memory := harness.Runtime() == "runsc"
	var copies []*client.Sandbox
	for i, f := range forks {
		if f.Err != nil {
			t.Fatalf("fork %d: %v", i, f.Err)
		}
		sb := f.Sandbox
		copies = append(copies, sb)
		if sb.ID == src.ID || sb.EnvdAccessToken == src.EnvdAccessToken {
			t.Fatalf("fork %d shares the source's id or token", i)
		}
		p, n, ok := readCounter(t, ctx, sb)
		if !ok || n < before {
			t.Fatalf("fork %d: counter file %d %d (%v); the source had %d before the fork", i, p, n, ok, before)
		}
		// The counter's own pid, running the counter (a fresh box may
		// reuse the number for something else).
		alive := mustRun(t, ctx, sb, fmt.Sprintf("grep -qs 'counter[.]tmp' /proc/%d/cmdline && echo alive || echo gone", pid), nil).Stdout
		if memory {
			if alive != "alive\n" {
				t.Fatalf("fork %d: the counter process did not come with the memory snapshot", i)
			}
			awaitCounter(t, ctx, sb, pid, n+3)
		} else if alive != "gone\n" {
			t.Fatalf("fork %d: a process came with a files-only snapshot", i)
		}
	}
	if !memory {
		return
	}
	// The copies diverge: the counter stopped in one goes on in the others.
	mustRun(t, ctx, copies[0], fmt.Sprintf("kill %d", pid), nil)
	_, stopped, _ := readCounter(t, ctx, copies[0])
	_, n1, _ := readCounter(t, ctx, copies[1])
	awaitCounter(t, ctx, copies[1], pid, n1+5)
	awaitCounter(t, ctx, src, pid, n1+5)
	if _, n, _ := readCounter(t, ctx, copies[0]); n > stopped+1 {
		t.Fatalf("the counter killed in fork 0 went on: %d after %d", n, stopped)
	}
}

// TestPortsAcrossPause: a server in the sandbox answers through the proxy
// before a pause and after each kind of resume (the same process after a
// frozen or memory pause; a new one after a files-only pause, whose box,
// and network namespace, are new), and proxied traffic to a paused sandbox
// with auto-resume wakes it.
func TestPortsAcrossPause(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute, Lifecycle: client.Lifecycle{AutoPause: true, AutoResume: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve := func() {
		t.Helper()
		res := mustRun(t, ctx, sb, `setsid nohup python3 -m http.server 8000 --directory /tmp >/dev/null 2>&1 &
for i in $(seq 200); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8000))' 2>/dev/null && exit 0; sleep 0.05; done; exit 1`, nil)
		if res.ExitCode != 0 {
			t.Fatalf("http.server did not start: %+v", res)
		}
	}
	get := func(want int) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/marker", nil)
		req.Header.Set("E2b-Sandbox-Id", sb.ID)
		req.Header.Set("E2b-Sandbox-Port", "8000")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("GET port 8000: %d %s, want %d", resp.StatusCode, b, want)
		}
		return string(b)
	}
	mustRun(t, ctx, sb, "echo one > /tmp/marker", nil)
	serve()
	if got := get(200); got != "one\n" {
		t.Fatalf("before the pause: %q", got)
	}

	// Paused with memory: the same server answers after the resume.
	if err := sb.Pause(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// With auto-resume, the proxied request itself resumes the sandbox.
	if got := get(200); got != "one\n" {
		t.Fatalf("auto-resumed by traffic: %q", got)
	}
	mustState(t, ctx, c, sb.ID, client.StateRunning, "")

	// Files only: the box is new; nothing listens until the server is
	// started again, and then it answers through the new namespace.
	if err := sb.Pause(ctx, &client.PauseOptions{FilesOnly: true}); err != nil {
		t.Fatal(err)
	}
	get(http.StatusBadGateway) // a files-only pause is not woken by traffic
	mustState(t, ctx, c, sb.ID, client.StatePaused, client.PauseFilesystem)
	if _, err := c.ConnectSandbox(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	get(http.StatusBadGateway) // nothing listens in the new box yet
	mustRun(t, ctx, sb, "echo two > /tmp/marker", nil)
	serve()
	if got := get(200); got != "two\n" {
		t.Fatalf("after a files-only resume: %q", got)
	}
}

// TestBoxDies: a box whose init dies while the server runs (a crash, the
// host's OOM killer, someone's kill -9) ends its sandbox at once: an
// ephemeral one is failed with the reason, a persistent one is paused with
// its files and comes back on connect. Boxes sbx stops itself (pause, kill)
// are not mistaken for deaths.
func TestBoxDies(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	c := srv.Client
	eph, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	keep, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute, Lifecycle: client.Lifecycle{Persistent: true}})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, keep, "echo kept > /home/user/kept", nil)
	paused, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := paused.Pause(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// A command streaming when its box dies ends with a clear error.
	stream, err := eph.Start(ctx, client.ExecOptions{Cmd: "sleep", Args: []string{"600"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{eph.ID, keep.ID} {
		b, err := os.ReadFile(filepath.Join(srv.DataDir, "sandboxes", id, "bundle", "init.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill the box's init %d: %v", pid, err)
		}
	}
	if _, err := stream.Wait(ctx); !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "went away") {
		t.Fatalf("a command's stream cut by its box dying: want unavailable, got %v", err)
	}
	info := awaitState(t, ctx, c, eph.ID, "failed", 10*time.Second)
	if !strings.Contains(info.Error, "exited unexpectedly") {
		t.Fatalf("failed sandbox's error %q does not say its box exited", info.Error)
	}
	if _, err := eph.Exec(ctx, client.ExecOptions{Cmd: "true"}); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("exec in a failed sandbox: want unavailable, got %v", err)
	}
	if list, err := c.ListSandboxes(ctx, nil); err != nil {
		t.Fatal(err)
	} else {
		for _, s := range list {
			if s.SandboxID == eph.ID {
				t.Fatalf("the failed sandbox is still listed as %s", s.State)
			}
		}
	}
	awaitState(t, ctx, c, keep.ID, client.StatePaused, 10*time.Second)
	mustState(t, ctx, c, keep.ID, client.StatePaused, client.PauseFilesystem)
	mustState(t, ctx, c, paused.ID, client.StatePaused, wantPauseKind())
	h, err := c.ConnectSandbox(ctx, keep.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, h, "cat /home/user/kept", nil); res.Stdout != "kept\n" {
		t.Fatalf("persistent sandbox after its box died: %q", res.Stdout)
	}
	if _, err := c.Resume(ctx, paused.ID, nil); err != nil {
		t.Fatal(err)
	}
	mustState(t, ctx, c, paused.ID, client.StateRunning, "")
	if err := eph.Kill(ctx); err != nil {
		t.Fatalf("kill the failed sandbox: %v", err)
	}
}

// TestPidsLimitAcrossPause: a sandbox limited to 64 tasks cannot fork past
// them, before a pause and after its resume (under runsc a memory pause:
// the box is restored from a checkpoint by a new runsc, which must apply
// the limit again).
func TestPidsLimitAcrossPause(t *testing.T) {
	srv := harness.Start(t, "--pids", "64", "--internet=false")
	ctx := ctxFor(t, 4*time.Minute)
	c := srv.Client
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Kill(ctx)
	// fill forks sleeping children until refused, then lets them go, and
	// says how many it held and why it stopped.
	fill := func(when string, sb *client.Sandbox) {
		t.Helper()
		res := mustRun(t, ctx, sb, `python3 -c '
import os, signal, time
kids, errno = [], 0
while len(kids) < 500:
    try:
        pid = os.fork()
    except OSError as e:
        errno = e.errno
        break
    if pid == 0:
        time.sleep(1e9)
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.kill(k, signal.SIGKILL)
for k in kids:
    os.waitpid(k, 0)
print("full", len(kids), errno)
'`, nil)
		var n, errno int
		if _, err := fmt.Sscanf(res.Stdout, "full %d %d", &n, &errno); err != nil || errno != int(syscall.EAGAIN) || n >= 64 || n < 40 {
			t.Fatalf("%s: forks stopped at %q (%v); want EAGAIN after 40-63 in a sandbox limited to 64 tasks", when, res.Stdout, err)
		}
	}
	fill("before the pause", sb)
	if err := sb.Pause(ctx, nil); err != nil {
		t.Fatalf("pause: %v", err)
	}
	mustState(t, ctx, c, sb.ID, client.StatePaused, wantPauseKind())
	sb2, err := c.Resume(ctx, sb.ID, &client.ResumeOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	fill("after the resume", sb2)
}
