package agent

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// account is a user as the sandbox's own /etc/passwd and /etc/group define it.
type account struct {
	name   string
	uid    uint32
	gid    uint32
	groups []uint32 // supplementary groups, the primary one included
	home   string
	shell  string
}

// userDB names the files accounts are read from. They are read on every
// lookup, so users a template or a process adds are seen at once.
type userDB struct {
	passwd string
	group  string
}

var systemUsers = userDB{passwd: "/etc/passwd", group: "/etc/group"}

// lookup finds name (or a numeric uid) in the passwd file, with its groups.
// The files are parsed here in Go rather than through libc: the agent is a
// static binary and must read the sandbox's files, not NSS modules.
func (db userDB) lookup(name string) (*account, error) {
	if name == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "empty user name")
	}
	var found *account
	err := scanColonFile(db.passwd, 7, func(f []string) bool {
		if f[0] != name && f[2] != name {
			return true
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return true
		}
		a := &account{name: f[0], uid: uint32(uid), gid: uint32(gid), home: f[5], shell: f[6]}
		if f[0] == name {
			found = a
			return false
		}
		if found == nil { // numeric match; keep looking for a user with that name
			found = a
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("look up user %q: %w", name, err)
	}
	if found == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "user %q does not exist in the sandbox", name)
	}
	found.groups = []uint32{found.gid}
	err = scanColonFile(db.group, 4, func(f []string) bool {
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || uint32(gid) == found.gid {
			return true
		}
		for _, m := range strings.Split(f[3], ",") {
			if strings.TrimSpace(m) == found.name {
				found.groups = append(found.groups, uint32(gid))
				break
			}
		}
		return true
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("look up groups of %q: %w", name, err)
	}
	return found, nil
}

// scanColonFile calls fn with the fields of each line of a passwd-style file
// that has at least n fields, until fn returns false.
func scanColonFile(path string, n int, fn func([]string) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) < n {
			continue
		}
		if !fn(fields) {
			return nil
		}
	}
	return sc.Err()
}
