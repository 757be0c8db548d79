package interp

import (
	"context"
	"log/slog"
)

// engine runs the cells of one context: a Python process running IPython's
// shell (startPython) for Python, a Jupyter kernel (kernel), IRkernel, for
// R, a Node.js process (nodeKernel) for JavaScript and TypeScript, a bash
// process (bashKernel) for bash. Each delivers a cell's output to its waiter as Jupyter iopub messages (stream,
// execute_input, execute_result, display_data, error, status), so that
// Server.run streams any language the same way.
type engine interface {
	// startCell sends code to run with env set for its duration and
	// returns the msg_id its messages carry as parent; done is called
	// once the cell is idle.
	startCell(ctx context.Context, code string, env map[string]string, w *waiter) (id string, done func(), err error)
	unwait(w *waiter)
	interrupt()
	kill()
	alive() bool
	exited() <-chan struct{}
	deathError() error
}

// startEngine starts the engine cfg describes.
func startEngine(ctx context.Context, cfg kernelConfig, log *slog.Logger) (engine, error) {
	if cfg.Node {
		return startNode(ctx, cfg, log)
	}
	if cfg.Bash {
		return startBash(ctx, cfg, log)
	}
	if cfg.Python {
		return startPython(ctx, cfg, log)
	}
	return startKernel(ctx, cfg, log)
}
