package harness

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
