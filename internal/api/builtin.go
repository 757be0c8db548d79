package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/template"
	"github.com/sbxdev/sbx/wire"
)

// Built-in templates (code-interpreter-v1, say) are built by sbx itself,
// on first use or ahead of time with POST /sbx/v1/templates/builtin/{name}
// (`sbx template build NAME`).

// Builtins builds the templates sbx makes itself; *template.Store is one.
// EnsureBuiltin returns at once when the template exists; concurrent calls
// for one name build it once.
type Builtins interface {
	EnsureBuiltin(ctx context.Context, name string, progress io.Writer) error
}

// ensureBuiltin builds template name first if it is a built-in template
// that is not built yet (a create of it then waits for the build). Base is
// built at start-up.
func (s *Server) ensureBuiltin(ctx context.Context, name string) error {
	if s.cfg.Builtins == nil || name == template.BaseName || !template.IsBuiltin(name) {
		return nil
	}
	return s.buildBuiltin(ctx, name, nil)
}

// buildBuiltin builds built-in template name, passing progress lines to
// line (which may be nil) while ctx lasts. The build itself is not
// cancelled with ctx: a client that gives up (the SDKs' request timeout is
// shorter than a first build) leaves it to finish for the next create.
func (s *Server) buildBuiltin(ctx context.Context, name string, line func(string)) error {
	pw := &progressLines{log: s.log.With("template", name)}
	pw.setLine(line)
	done := make(chan error, 1)
	go func() { done <- s.cfg.Builtins.EnsureBuiltin(context.WithoutCancel(ctx), name, pw) }()
	select {
	case err := <-done:
		pw.setLine(nil)
		return err
	case <-ctx.Done():
		pw.setLine(nil)
		return ctx.Err()
	}
}

func (s *Server) buildBuiltinTemplate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := template.ValidateName(name); err != nil {
		return err
	}
	if s.cfg.Builtins == nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, "this server does not build templates")
	}
	if !template.IsBuiltin(name) {
		return errdefs.New(errdefs.ErrNotFound, "%q is not a built-in template (built-in: %s)", name, strings.Join(template.Builtins(), ", "))
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	emit := func(l wire.BuiltinBuildLine) {
		mu.Lock()
		defer mu.Unlock()
		b, _ := json.Marshal(l)
		w.Write(append(b, '\n'))
		rc.Flush()
	}
	err := s.buildBuiltin(r.Context(), name, func(msg string) { emit(wire.BuiltinBuildLine{Kind: "log", Message: msg}) })
	if err != nil {
		s.log.Error("built-in template build failed", "template", name, "err", err)
		emit(wire.BuiltinBuildLine{Kind: "end", Status: "error", Error: errdefs.Message(err)})
		return nil
	}
	emit(wire.BuiltinBuildLine{Kind: "end", Status: "ready"})
	return nil
}

// progressLines turns build progress into log records and, while a client
// follows, into calls of line.
type progressLines struct {
	log  *slog.Logger
	mu   sync.Mutex
	buf  []byte
	line func(string)
}

func (p *progressLines) setLine(f func(string)) {
	p.mu.Lock()
	p.line = f
	p.mu.Unlock()
}

func (p *progressLines) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		msg := strings.TrimRight(string(p.buf[:i]), "\r")
		p.buf = p.buf[i+1:]
		p.log.Info("template build", "progress", strings.TrimSpace(msg))
		if p.line != nil {
			p.line(msg)
		}
	}
	return len(b), nil
}
