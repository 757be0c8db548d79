package agent

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// openPTY opens a pseudo-terminal pair sized as size asks.
//
// It does the few ioctls itself rather than through github.com/creack/pty:
// that package's ioctls go through os.File.Fd, which switches the master to
// blocking mode, and then read deadlines no longer work. The agent needs
// them to stop reading a terminal that a background process keeps open after
// the shell has exited (see drainGrace).
func openPTY(size *pb.PTY) (master, tty *os.File, err error) {
	// O_NOCTTY: the agent itself must never acquire the terminal.
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	defer func() {
		if err != nil {
			master.Close()
		}
	}()
	var n uint32
	err = control(master, func(fd int) error {
		var err error
		if n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN); err != nil {
			return fmt.Errorf("pty number: %w", err)
		}
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlock pty: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if err = setSize(master, size); err != nil {
		return nil, nil, err
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	tty, err = os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	return master, tty, nil
}

// control runs fn on f's descriptor without taking f out of non-blocking
// mode (as f.Fd would).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func setSize(master *os.File, size *pb.PTY) error {
	s := size.GetSize()
	if s == nil {
		return nil // keep the kernel's default
	}
	if s.GetCols() == 0 || s.GetRows() == 0 {
		return errdefs.New(errdefs.ErrInvalidArgument, "pty size must have cols and rows above zero")
	}
	if s.GetCols() > 0xffff || s.GetRows() > 0xffff {
		return errdefs.New(errdefs.ErrInvalidArgument, "pty size %dx%d is too large", s.GetCols(), s.GetRows())
	}
	ws := &unix.Winsize{Col: uint16(s.GetCols()), Row: uint16(s.GetRows())}
	if err := control(master, func(fd int) error { return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws) }); err != nil {
		return fmt.Errorf("set pty size: %w", err)
	}
	return nil
}

// resize changes the terminal size of a PTY process; the kernel sends it
// SIGWINCH.
func (p *process) resize(size *pb.PTY) error {
	if p.pty == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, "process %d has no PTY", p.pid)
	}
	if size.GetSize() == nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "pty size is required")
	}
	return setSize(p.pty, size)
}
