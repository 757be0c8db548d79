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
// listens at once and starts the default Python context in the
// background; an execution waits for it. SIGTERM or SIGINT ends the kernels
// and exits 0.
func runCodeInterpreter(args []string) int {
	fs := flag.NewFlagSet("code-interpreter", flag.ContinueOnError)
	listen := fs.String("listen", ":49999", "TCP address to serve on")
	python := fs.String("python", "python3", "the Python interpreter that runs ipykernel")
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
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	srv := interp.New(interp.Config{Python: *python, Cwd: dir}, log)
	defer srv.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		start := time.Now()
		if err := srv.StartDefault(ctx); err != nil {
			log.Error("default context", "err", err)
			return
		}
		log.Info("default context ready", "duration", time.Since(start))
	}()
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
