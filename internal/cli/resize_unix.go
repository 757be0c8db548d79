//go:build unix

package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/sbxdev/sbx/client"
)

// watchResize forwards the terminal fd's size to p's pseudo-terminal on every
// SIGWINCH until ctx ends. It does nothing when fd is not a terminal (-1).
func watchResize(ctx context.Context, fd int, p *client.Process) {
	if fd < 0 {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	defer signal.Stop(ch)
	for {
		select {
		case <-ch:
			w, h, err := term.GetSize(fd)
			if err == nil && w > 0 && h > 0 {
				_ = p.Resize(ctx, client.PTYSize{Cols: uint32(w), Rows: uint32(h)})
			}
		case <-ctx.Done():
			return
		}
	}
}
