// Command sbx is the sbx server (`sbx serve`) and its command-line client.
// See package github.com/sbxdev/sbx/internal/cli for the commands and exit
// codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sbxdev/sbx/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, the default action comes back: a second
	// Ctrl-C ends sbx at once instead of waiting for cleanup.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
