// Package vm boots a throwaway QEMU guest (TCG) whose root
// is an initramfs built from the base template, mounts a pure cgroup v2
// hierarchy in it and runs sbx's runtime and end-to-end test binaries there.
// It is how sbx's cgroup v2 support is tested on hosts that are themselves
// cgroup v1 (hybrid), such as the project's CI machines.
//
// The guest kernel is Debian's, fetched by scripts/setup.sh into KernelDir.
package vm

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// KernelDir is where scripts/setup.sh puts the guest kernel (vmlinuz) and
// its modules (lib/modules/VERSION).
const KernelDir = "/usr/local/lib/sbx/vm"

// cpioWriter writes a newc ("070701") archive, the format the kernel
// unpacks as an initramfs.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIO(w io.Writer) *cpioWriter { return &cpioWriter{w: w, dirs: map[string]bool{"": true}} }

func (c *cpioWriter) header(name string, mode, uid, gid uint32, size int64, rdev uint64) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, uid, gid, 1, 0, size, 0, 0,
		unix.Major(rdev), unix.Minor(rdev), len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(int64(len(hdr) + len(name) + 1))
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int64) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// mkdirAll adds directory entries for name's parents not yet written: the
// kernel's unpacker does not create missing parents.
func (c *cpioWriter) mkdirAll(name string) {
	dir := path.Dir(name)
	if dir == "." || c.dirs[dir] {
		return
	}
	c.mkdirAll(dir)
	c.dirs[dir] = true
	c.header(dir, syscall.S_IFDIR|0o755, 0, 0, 0, 0)
}

// dir adds a directory.
func (c *cpioWriter) dir(name string, perm uint32, uid, gid uint32) {
	name = strings.TrimPrefix(name, "/")
	c.mkdirAll(name)
	if !c.dirs[name] {
		c.dirs[name] = true
		c.header(name, syscall.S_IFDIR|perm, uid, gid, 0, 0)
	}
}

// bytes adds a regular file with contents b.
func (c *cpioWriter) bytes(name string, perm uint32, b []byte) {
	name = strings.TrimPrefix(name, "/")
	c.mkdirAll(name)
	c.header(name, syscall.S_IFREG|perm, 0, 0, int64(len(b)), 0)
	c.write(b)
	c.pad(int64(len(b)))
}

// file adds host file src as name.
func (c *cpioWriter) file(name, src string, perm uint32) {
	b, err := os.ReadFile(src)
	if err != nil && c.err == nil {
		c.err = err
	}
	c.bytes(name, perm, b)
}

// tree adds every entry under host directory root, with its owner and mode,
// below prefix. Hard links become copies.
func (c *cpioWriter) tree(root, prefix string) {
	if c.err != nil {
		return
	}
	c.err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := strings.TrimPrefix(path.Join(prefix, filepath.ToSlash(rel)), "/")
		if name == "" || name == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		c.mkdirAll(name)
		switch {
		case fi.IsDir():
			c.dirs[name] = true
			c.header(name, st.Mode, st.Uid, st.Gid, 0, 0)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			c.header(name, st.Mode, st.Uid, st.Gid, int64(len(target)), 0)
			c.write([]byte(target))
			c.pad(int64(len(target)))
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			c.header(name, st.Mode, st.Uid, st.Gid, fi.Size(), 0)
			if c.err == nil {
				if _, err := io.CopyN(c.w, f, fi.Size()); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			c.pad(fi.Size())
		case fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
			c.header(name, st.Mode, st.Uid, st.Gid, 0, st.Rdev)
		}
		return c.err
	})
}

// close writes the trailer.
func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0, 0)
	return c.err
}
