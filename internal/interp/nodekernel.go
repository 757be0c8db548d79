package interp

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/evanw/esbuild/pkg/api"
)

//go:embed kernel.js
var kernelJS string

// nodeKernel is a JavaScript or TypeScript context: a Node.js process
// running kernel.js (a lineKernel), which takes cells on its stdin and
// answers on fd 3. The server needs no Jupyter kernel for JavaScript
// (Debian has none); node is in the template already.
type nodeKernel struct {
	*lineKernel
	// ts makes it a TypeScript context: each cell is transpiled to
	// JavaScript before it runs (tsCell).
	ts bool
}

// startNode starts cfg.Argv[0] (node) on kernel.js and returns once it
// said it runs.
func startNode(ctx context.Context, cfg kernelConfig, log *slog.Logger) (*nodeKernel, error) {
	dir, err := os.MkdirTemp("", "sbx-kernel-")
	if err != nil {
		return nil, fmt.Errorf("start kernel: %w", err)
	}
	script := filepath.Join(dir, "kernel.js")
	if err := os.WriteFile(script, []byte(kernelJS), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start kernel: %w", err)
	}
	lk, err := startLineKernel(ctx, lineKernelSpec{
		argv: append(append([]string{}, cfg.Argv...), script),
		cwd:  cfg.Cwd, env: cfg.Env, dir: dir, stdinRequests: true,
	}, log)
	if err != nil {
		return nil, err
	}
	return &nodeKernel{lineKernel: lk, ts: cfg.TypeScript}, nil
}

func (k *nodeKernel) startCell(ctx context.Context, code string, env map[string]string, w *waiter) (string, func(), error) {
	if !k.ts {
		return k.lineKernel.startCell(ctx, code, env, w)
	}
	id := newID()
	js, msgs := tsCell(id, code)
	if msgs != nil {
		for _, m := range msgs {
			w.push(m)
		}
		return id, func() {}, nil
	}
	if err := k.send(id, js, env, w); err != nil {
		return "", nil, err
	}
	return id, func() {}, nil
}

// tsCell transpiles TypeScript cell code to the JavaScript the kernel runs:
// types are removed (not checked), enums and namespaces become objects,
// and top-level await stays, as the node REPL runs it. Code that does not
// parse returns the messages of a failed cell (a SyntaxError, then idle)
// instead, for cell id.
func tsCell(id, code string) (string, []*message) {
	r := api.Transform(code, api.TransformOptions{Loader: api.LoaderTS, Target: api.ESNext, Sourcefile: "cell.ts"})
	if len(r.Errors) == 0 {
		return string(r.Code), nil
	}
	var lines []string
	for _, e := range r.Errors {
		l := e.Text
		if e.Location != nil {
			l = fmt.Sprintf("cell.ts:%d:%d: %s\n    %s", e.Location.Line, e.Location.Column+1, e.Text, e.Location.LineText)
		}
		lines = append(lines, l)
	}
	return "", []*message{
		bashMessage(id, "error", map[string]any{"ename": "SyntaxError", "evalue": r.Errors[0].Text, "traceback": lines}),
		bashMessage(id, "status", map[string]any{"execution_state": "idle"}),
	}
}
