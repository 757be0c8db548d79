package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/internal/interp"
)

// runCodeInterpreter implements `sbx-agent code-interpreter [-listen ADDR]
// [-python PATH] [-cwd DIR]`: the code interpreter's server (package
// interp), the start command of the code-interpreter-v1 template. It is a
// subcommand of the agent so that the server in a sandbox is always the
// one of the sbx running it, not whatever a cached template holds. It
// starts the default Python context before it accepts connections, so that
// the template's ready check (its port) passes once a first execution
// starts no kernel: a create returns then, and a warm pool's sandbox is
// pooled with its kernel ready. A default context that fails to start is
// logged and the server listens all the same (an execution starts one
// again). SIGTERM or SIGINT ends the kernels and exits 0.
func runCodeInterpreter(args []string) int {
	fs := flag.NewFlagSet("code-interpreter", flag.ContinueOnError)
	listen := fs.String("listen", ":49999", "TCP address to serve on")
	python := fs.String("python", "python3", "the Python interpreter (with IPython) that runs Python contexts")
	cwd := fs.String("cwd", "", "working directory of contexts created without one (default: $HOME, else /home/user)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "code-interpreter")
	dir := *cwd
	if dir == "" {
		dir = os.Getenv("HOME")
	}
	if dir == "" {
		dir = "/home/user"
	}
	srv := interp.New(interp.Config{Python: *python, Cwd: dir}, log)
	defer srv.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	start := time.Now()
	if err := srv.StartDefault(ctx); err != nil {
		log.Error("default context", "err", err)
	} else {
		log.Info("default context ready", "duration", time.Since(start))
	}
	if ctx.Err() != nil {
		return 0
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		log.Error("serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintln(os.Stderr, "sbx-agent code-interpreter:", err)
	}
	return 0
}
