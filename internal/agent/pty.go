package agent

import (
	"fmt"
	"os"

	"github.com/creack/pty"

	pb "github.com/sbxdev/sbx/gen/process"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// openPTY opens a pseudo-terminal pair sized as size asks.
func openPTY(size *pb.PTY) (master, tty *os.File, err error) {
	master, tty, err = pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	if err := setSize(master, size); err != nil {
		master.Close()
		tty.Close()
		return nil, nil, err
	}
	return master, tty, nil
}

func setSize(master *os.File, size *pb.PTY) error {
	s := size.GetSize()
	if s == nil || s.GetCols() == 0 || s.GetRows() == 0 {
		if s == nil {
			return nil // keep the kernel's default
		}
		return errdefs.New(errdefs.ErrInvalidArgument, "pty size must have cols and rows above zero")
	}
	if s.GetCols() > 0xffff || s.GetRows() > 0xffff {
		return errdefs.New(errdefs.ErrInvalidArgument, "pty size %dx%d is too large", s.GetCols(), s.GetRows())
	}
	if err := pty.Setsize(master, &pty.Winsize{Cols: uint16(s.GetCols()), Rows: uint16(s.GetRows())}); err != nil {
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
