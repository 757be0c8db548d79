package harness

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// sweep removes what a test's server left behind below its data directory
// when its own clean-up could not: a server that crashed for good, or
// sandboxes of a team whose key the harness does not hold. Boxes are
// deleted through the runtimes' own state directories, then the mounts
// below the data directory are lazily unmounted (deepest first) and the
// loop devices backed by its files detached. Each thing swept is logged:
// a test that leaves sandboxes to this fallback has a bug of its own.
func (s *Server) sweep() {
	for _, rt := range []struct{ bin, dir, force string }{
		// The runtimes' installed paths (Require); the harness does not
		// import their drivers, whose packages' tests import it.
		{"/usr/local/lib/sbx/runc", "runc", "-f"},
		{"/usr/local/lib/sbx/runsc", "runsc", "-force"},
	} {
		root := filepath.Join(s.DataDir, rt.dir)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		out, err := exec.Command(rt.bin, "--root", root, "list", "-q").Output()
		if err != nil {
			continue
		}
		for _, id := range strings.Fields(string(out)) {
			s.t.Logf("cleanup: %s box %s outlived its server; deleting it", rt.dir, id)
			exec.Command(rt.bin, "--root", root, "delete", rt.force, id).Run()
		}
	}
	// A runsc box whose state its runtime no longer holds (a delete that
	// removed the state but not the processes) is found by its processes'
	// --root flag, which names this server's state directory.
	for _, pid := range processesWithArg("--root=" + filepath.Join(s.DataDir, "runsc")) {
		s.t.Logf("cleanup: runsc process %d outlived its server and its state; killing it", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, m := range mountsBelow(s.DataDir) {
		s.t.Logf("cleanup: unmounting %s", m)
		exec.Command("umount", "-l", m).Run()
	}
	out, err := exec.Command("losetup", "-l", "-n", "-O", "NAME,BACK-FILE").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.HasPrefix(f[1], s.DataDir+"/") {
			s.t.Logf("cleanup: detaching %s (%s)", f[0], f[1])
			exec.Command("losetup", "-d", f[0]).Run()
		}
	}
}

// mountsBelow lists the mount points below dir, deepest first.
func mountsBelow(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		// Mount points escape space, tab, newline and backslash as octal.
		mp := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(out)
}

// processesWithArg lists the processes with arg among their arguments.
func processesWithArg(arg string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(b), "\x00"), arg) {
			pids = append(pids, pid)
		}
	}
	return pids
}
