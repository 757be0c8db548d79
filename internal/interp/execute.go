package interp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// executeRequest is the body of POST /execute as the SDKs send it.
type executeRequest struct {
	Code      string            `json:"code"`
	ContextID string            `json:"context_id"`
	Language  string            `json:"language"`
	EnvVars   map[string]string `json:"env_vars"`
}

// mimeKey maps the MIME types of a Jupyter display to the keys of an E2B
// result; others keep their MIME type as key (the SDKs list them in
// Result.extra).
func mimeKey(mime string) string {
	switch mime {
	case "text/plain":
		return "text"
	case "text/html":
		return "html"
	case "text/markdown":
		return "markdown"
	case "image/svg+xml":
		return "svg"
	case "image/png":
		return "png"
	case "image/jpeg":
		return "jpeg"
	case "application/pdf":
		return "pdf"
	case "text/latex":
		return "latex"
	case "application/json":
		return "json"
	case "application/javascript":
		return "javascript"
	case "e2b/data":
		return "data"
	case "e2b/chart":
		return "chart"
	}
	return mime
}

// execute runs code in a context and streams its output as JSON lines, in
// the order the kernel produced them:
//
//	{"type":"number_of_executions","execution_count":N}
//	{"type":"stdout"|"stderr","text":"...","timestamp":"..."}
//	{"type":"result","is_main_result":bool,"text":...,"png":...,...}
//	{"type":"error","name":"...","value":"...","traceback":"..."}
//	{"type":"end_of_execution"}
//
// The SDK ends the request at its timeoutMs: the server then interrupts the
// cell (KeyboardInterrupt), so the context stays usable.
func (s *Server) execute(w http.ResponseWriter, r *http.Request) error {
	var req executeRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.ContextID != "" && req.Language != "" {
		return &httpError{http.StatusBadRequest, "give context_id or language, not both"}
	}
	for k := range req.EnvVars {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return &httpError{http.StatusBadRequest, fmt.Sprintf("env var name %q is not valid", k)}
		}
	}
	var c *codeContext
	var err error
	if req.ContextID != "" {
		c, err = s.lookup(req.ContextID)
	} else {
		lang := normLanguage(req.Language)
		if _, err := s.kernelConfig(lang, s.cfg.Cwd); err != nil {
			return err
		}
		c, err = s.defaultContext(r.Context(), lang)
	}
	if err != nil {
		return err
	}
	if c.Language == "bash" {
		for k := range req.EnvVars {
			if !validEnvName(k) {
				return &httpError{http.StatusBadRequest, fmt.Sprintf("env var name %q is not valid in bash", k)}
			}
		}
	}
	ctx := r.Context()
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil // the client gave up waiting for the context
	}
	defer func() { <-c.sem }()
	k := c.kernel

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	out := &lineWriter{w: w, rc: http.NewResponseController(w)}
	defer out.flush()
	if !k.alive() {
		out.emit(kernelError(c, k.deathError()))
		return nil
	}
	s.run(ctx, c, k, req.Code, req.EnvVars, out)
	return nil
}

// run runs one cell and streams its messages to out until the kernel is
// idle again.
func (s *Server) run(ctx context.Context, c *codeContext, k engine, code string, env map[string]string, out *lineWriter) {
	wt := newWaiter(s.cfg.OutputLimit)
	defer k.unwait(wt)
	id, done, err := k.startCell(ctx, code, env, wt)
	if err != nil {
		out.emit(kernelError(c, err))
		return
	}
	defer done()
	interrupted := false
	var grace <-chan time.Time
	for {
		if wt.empty() {
			out.flush() // what the kernel sent so far, before waiting for more
		}
		m, err := wt.next(ctx, k.exited(), grace)
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			// The client is gone (its timeoutMs, or it went away): stop
			// the cell and wait for the kernel to be idle, so the next
			// execution starts clean.
			if !interrupted {
				interrupted = true
				s.log.Info("execution interrupted: the client went away", "context", c.ID)
				k.interrupt()
				ctx = context.Background()
				grace = time.After(interruptGrace)
			}
			continue
		case errors.Is(err, errWaitTimeout):
			s.log.Warn("interrupted execution did not end; restarting the kernel", "context", c.ID)
			if err := s.replaceKernel(context.Background(), c); err != nil {
				s.log.Error("restart after interrupt", "context", c.ID, "err", err)
			}
			return
		case errors.Is(err, io.EOF):
			out.emit(kernelError(c, k.deathError()))
			return
		default:
			out.emit(kernelError(c, err))
			return
		}
		if m.channel != "iopub" || m.Parent.MsgID != id {
			continue
		}
		switch m.Header.MsgType {
		case "status":
			var st struct {
				State string `json:"execution_state"`
			}
			json.Unmarshal(m.Content, &st)
			if st.State == "idle" {
				if n := wt.droppedBytes(); n > 0 {
					out.emit(map[string]any{"type": "stderr", "text": fmt.Sprintf("[sbx: output truncated: %d bytes past the limit of %d bytes per execution were dropped]\n", n, s.cfg.OutputLimit), "timestamp": now()})
				}
				out.emit(map[string]any{"type": "end_of_execution"})
				out.flush()
				return
			}
		case "execute_input":
			var in struct {
				Count int `json:"execution_count"`
			}
			json.Unmarshal(m.Content, &in)
			out.emit(map[string]any{"type": "number_of_executions", "execution_count": in.Count})
		case "stream":
			var st struct {
				Name string `json:"name"`
				Text string `json:"text"`
			}
			json.Unmarshal(m.Content, &st)
			typ := "stdout"
			if st.Name == "stderr" {
				typ = "stderr"
			}
			out.emit(map[string]any{"type": typ, "text": st.Text, "timestamp": now()})
		case "execute_result", "display_data":
			var d struct {
				Data map[string]json.RawMessage `json:"data"`
			}
			json.Unmarshal(m.Content, &d)
			res := map[string]any{"type": "result", "is_main_result": m.Header.MsgType == "execute_result"}
			for mime, v := range d.Data {
				res[mimeKey(mime)] = v
			}
			out.emit(res)
		case "error":
			var e struct {
				EName     string   `json:"ename"`
				EValue    string   `json:"evalue"`
				Traceback []string `json:"traceback"`
			}
			json.Unmarshal(m.Content, &e)
			out.emit(map[string]any{"type": "error", "name": e.EName, "value": e.EValue, "traceback": strings.Join(e.Traceback, "\n")})
		}
	}
}

// kernelError is the error line of an execution whose kernel failed.
func kernelError(c *codeContext, err error) map[string]any {
	var kd *kernelDiedError
	name := "KernelError"
	if errors.As(err, &kd) {
		name = "KernelDied"
	}
	return map[string]any{"type": "error", "name": name,
		"value":     fmt.Sprintf("context %s: %v; restart the context (restartCodeContext) to get a new one", c.ID, err),
		"traceback": ""}
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// lineWriter writes JSON lines; run flushes them whenever it has written
// all the kernel sent so far, so that the client sees output as it
// happens, in as few writes as the kernel's pace allows. Writes after the
// client left are dropped.
type lineWriter struct {
	w      io.Writer
	rc     *http.ResponseController
	failed bool
	dirty  bool // written since the last flush
}

func (l *lineWriter) emit(v any) {
	if l.failed {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	b = append(b, '\n')
	if _, err := l.w.Write(b); err != nil {
		l.failed = true
		return
	}
	l.dirty = true
}

func (l *lineWriter) flush() {
	if l.failed || !l.dirty {
		return
	}
	l.dirty = false
	if err := l.rc.Flush(); err != nil {
		l.failed = true
	}
}
