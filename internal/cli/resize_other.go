//go:build !unix

package cli

import (
	"context"

	"github.com/sbxdev/sbx/client"
)

// watchResize does nothing where there is no SIGWINCH.
func watchResize(ctx context.Context, fd int, p *client.Process) {}
