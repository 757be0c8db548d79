// Command init is PID 1 of the cgroup v2 test VM (see package vm): it makes
// a Debian root filesystem that was unpacked from the initramfs usable
// (proc, sys, dev, a cgroup v2 hierarchy, kernel modules), runs the test
// binaries named in /vm/run, prints a result line the host parses, and
// powers the VM off.
//
// It is a static Go binary so that it needs nothing from the root it sets
// up.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ResultPrefix starts the line that carries each test binary's exit status;
// the host side greps for it (keep in sync with package vm).
const ResultPrefix = "SBX-VM-RESULT"

func main() {
	if err := setup(); err != nil {
		fmt.Printf("%s setup 1 %v\n", ResultPrefix, err)
		poweroff()
	}
	// /vm/run: one command per line, fields separated by spaces.
	f, err := os.Open("/vm/run")
	if err != nil {
		fmt.Printf("%s setup 1 %v\n", ResultPrefix, err)
		poweroff()
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		args := strings.Fields(sc.Text())
		if len(args) == 0 {
			continue
		}
		env := []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=/root", "TMPDIR=/tmp",
			"SBX_TEST_BIN=/vm/bin", "SBX_TEST_BOXINIT=/vm/bin/boxinit",
		}
		// Leading NAME=value fields set the command's environment.
		for len(args) > 1 && strings.Contains(args[0], "=") {
			env = append(env, args[0])
			args = args[1:]
		}
		t0 := time.Now()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		cmd.Env = env
		cmd.Dir = "/vm"
		code := 0
		if err := cmd.Run(); err != nil {
			code = 1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			fmt.Println("run:", err)
		}
		fmt.Printf("%s %s %d %s\n", ResultPrefix, args[0], code, time.Since(t0).Round(time.Millisecond))
	}
	poweroff()
}

func setup() error {
	// The initramfs root (rootfs) cannot be pivot_root'ed away from, and
	// runc pivot_roots into every box: move a bind mount of it over / so
	// the root has a parent mount, as switch_root would.
	if err := unix.Mount("/", "/mnt", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind root: %w", err)
	}
	if err := unix.Chdir("/mnt"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	unix.Chdir("/")
	mounts := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
		{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		// The point of the VM: a pure cgroup v2 host.
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	}
	for _, m := range mounts {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	os.Symlink("pts/ptmx", "/dev/ptmx")
	// The kernel gives init /dev/console only if the initramfs has one;
	// this one's /dev came from a template, so open it now.
	if fd, err := unix.Open("/dev/console", unix.O_RDWR, 0); err == nil {
		for i := 0; i < 3; i++ {
			unix.Dup2(fd, i)
		}
		if fd > 2 {
			unix.Close(fd)
		}
	}
	// The template's rootfs is the VM's own root: bind it where the test
	// cache expects the base template instead of carrying a second copy.
	if b, err := os.ReadFile("/vm/template-rootfs"); err == nil {
		dst := strings.TrimSpace(string(b))
		if err := unix.Mount("/", dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind template rootfs: %w", err)
		}
	}
	if err := loadModules("/vm/modules"); err != nil {
		return err
	}
	if err := loUp(); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	unix.Sethostname([]byte("sbx-vm"))
	var ut unix.Utsname
	unix.Uname(&ut)
	fmt.Printf("sbx-vm: kernel %s, cgroup2 at /sys/fs/cgroup\n", unix.ByteSliceToString(ut.Release[:]))
	return nil
}

// loadModules loads the .ko files listed (dependencies first) in list.
func loadModules(list string) error {
	b, err := os.ReadFile(list)
	if err != nil {
		return nil // no modules needed
	}
	for _, p := range strings.Fields(string(b)) {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("module %s: %w", p, err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			// Not fatal: a module a test needs shows up as that test's
			// failure, with this line in the console.
			fmt.Printf("sbx-vm: load module %s: %v\n", p, err)
		}
	}
	return nil
}

// loUp brings the loopback interface up (sbx serve listens on 127.0.0.1).
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var ifr [40]byte
	copy(ifr[:], "lo")
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return e
	}
	flags := *(*uint16)(unsafe.Pointer(&ifr[16]))
	*(*uint16)(unsafe.Pointer(&ifr[16])) = flags | unix.IFF_UP | unix.IFF_RUNNING
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return e
	}
	return nil
}

func poweroff() {
	os.Stdout.Sync()
	syscall.Sync()
	// The VM runs with -no-reboot, so a restart ends qemu; microvm has no
	// ACPI to power off with.
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}
