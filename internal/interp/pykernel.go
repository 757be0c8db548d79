package interp

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

//go:embed pykernel.py
var pykernelPy string

// startPython starts a Python context's kernel: cfg.Argv[0] (python3) on
// pykernel.py, a lineKernel that runs cells through IPython's
// InteractiveShell with startup.py's display formats. It returns once the
// shell is up and has run a first cell of its own.
//
// Not ipykernel: a cell's round trip is then one line each way on a pipe
// instead of signed Jupyter messages over ZeroMQ sockets and ipykernel's
// threads and event loop, and a kernel's start imports IPython without
// ipykernel, ZeroMQ and tornado. The shell is the same, so execution
// counts, display(), rich reprs, magics and tracebacks are IPython's.
func startPython(ctx context.Context, cfg kernelConfig, log *slog.Logger) (*lineKernel, error) {
	dir, err := os.MkdirTemp("", "sbx-kernel-")
	if err != nil {
		return nil, fmt.Errorf("start kernel: %w", err)
	}
	script := filepath.Join(dir, "pykernel.py")
	for name, body := range map[string]string{"pykernel.py": pykernelPy, "startup.py": startupPy} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start kernel: %w", err)
		}
	}
	return startLineKernel(ctx, lineKernelSpec{
		argv: append(append([]string{}, cfg.Argv...), script),
		cwd:  cfg.Cwd, env: cfg.Env, dir: dir, pdeathsig: syscall.SIGKILL,
	}, log)
}
