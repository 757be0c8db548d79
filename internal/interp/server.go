package interp

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// startupPy adds the display formats of E2B's SDKs to a Python kernel
// (pykernel.py runs it).
//
//go:embed startup.py
var startupPy string

// Limits of the server.
const (
	// MaxRequestBytes bounds a request body (the code of /execute with
	// its env vars): 413 past it.
	MaxRequestBytes = 8 << 20
	// DefaultOutputLimit bounds the output of one execution (stdout,
	// stderr and results, as the kernel sends them): what comes past it
	// is dropped and a note on stderr says how much.
	DefaultOutputLimit = 16 << 20
	// kernelStartTimeout bounds a kernel's start (process, channels,
	// start-up code).
	kernelStartTimeout = 60 * time.Second
	// interruptGrace is how long an interrupted execution may take to end
	// before its kernel is restarted.
	interruptGrace = 10 * time.Second
)

// Config configures a Server.
type Config struct {
	// Python is the Python interpreter, with IPython, that runs Python
	// contexts ("python3").
	Python string
	// Node runs JavaScript contexts ("node").
	Node string
	// Bash runs bash contexts ("bash").
	Bash string
	// R runs R contexts' kernel, IRkernel ("R").
	R string
	// Cwd is the working directory of contexts created without one.
	Cwd string
	// OutputLimit bounds one execution's output (DefaultOutputLimit when
	// zero).
	OutputLimit int
}

// Server is the code interpreter's HTTP server: the routes
// @e2b/code-interpreter calls on port 49999. Create it with New; it holds
// one kernel per context. Close ends them.
type Server struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	contexts map[string]*codeContext
	defaults map[string]string // language → id of its default context
	closed   bool
}

// codeContext is one stateful context: a kernel and its settings. One
// execution runs in it at a time; sem is held while it does (and while
// the kernel is being replaced).
type codeContext struct {
	ID       string `json:"id"`
	Language string `json:"language"`
	Cwd      string `json:"cwd"`

	sem    chan struct{}
	kernel engine // guarded by sem
}

// New returns a server. It starts no kernel: call StartDefault to have the
// default Python context ready before the first request.
func New(cfg Config, log *slog.Logger) *Server {
	if cfg.Python == "" {
		cfg.Python = "python3"
	}
	if cfg.Node == "" {
		cfg.Node = "node"
	}
	if cfg.Bash == "" {
		cfg.Bash = "bash"
	}
	if cfg.R == "" {
		cfg.R = "R"
	}
	if cfg.Cwd == "" {
		cfg.Cwd = "/home/user"
	}
	if cfg.OutputLimit == 0 {
		cfg.OutputLimit = DefaultOutputLimit
	}
	return &Server{cfg: cfg, log: log, contexts: map[string]*codeContext{}, defaults: map[string]string{}}
}

// languages the server runs, each with the kernel that runs it.
func (s *Server) kernelConfig(language, cwd string) (kernelConfig, error) {
	switch language {
	case "python":
		env := append(os.Environ(),
			"MPLBACKEND=module://matplotlib_inline.backend_inline",
			"PYTHONUNBUFFERED=1",
			"SBX_OUTPUT_LIMIT="+strconv.Itoa(s.cfg.OutputLimit),
		)
		return kernelConfig{Python: true, Argv: []string{s.cfg.Python}, Cwd: cwd, Env: env}, nil
	case "javascript":
		return kernelConfig{Node: true, Argv: []string{s.cfg.Node}, Cwd: cwd, Env: os.Environ()}, nil
	case "typescript":
		return kernelConfig{Node: true, TypeScript: true, Argv: []string{s.cfg.Node}, Cwd: cwd, Env: os.Environ()}, nil
	case "bash":
		return kernelConfig{Bash: true, Argv: []string{s.cfg.Bash, "--noprofile", "--norc"}, Cwd: cwd, Env: os.Environ()}, nil
	case "r":
		// IRkernel's kernelspec (/usr/share/jupyter/kernels/ir), with
		// --no-save --no-restore: a context starts from an empty
		// workspace and leaves none behind.
		return kernelConfig{R: true, Argv: []string{s.cfg.R, "--slave", "--no-save", "--no-restore", "-e", "IRkernel::main()", "--args", "{connection_file}"},
			Cwd: cwd, Env: os.Environ()}, nil
	}
	return kernelConfig{}, &httpError{http.StatusBadRequest, fmt.Sprintf("language %q is not supported (supported: python, javascript, typescript, bash, r)", language)}
}

// normLanguage maps the SDKs' names for a language to the server's.
func normLanguage(l string) string {
	switch l = strings.ToLower(strings.TrimSpace(l)); l {
	case "", "python", "python3":
		return "python"
	case "js", "javascript", "node", "nodejs":
		return "javascript"
	case "ts", "typescript":
		return "typescript"
	case "bash", "sh", "shell":
		return "bash"
	case "r":
		return "r"
	}
	return l
}

// StartDefault starts the default Python context.
func (s *Server) StartDefault(ctx context.Context) error {
	_, err := s.defaultContext(ctx, "python")
	return err
}

// Close ends every kernel.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	cs := s.contexts
	s.contexts = map[string]*codeContext{}
	s.mu.Unlock()
	for _, c := range cs {
		c.sem <- struct{}{}
		if c.kernel != nil {
			c.kernel.kill()
		}
	}
}

// httpError is an error with the status and the message a client gets.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "\"OK\"")
	})
	m.HandleFunc("POST /execute", s.wrap(s.execute))
	m.HandleFunc("POST /contexts", s.wrap(s.createContext))
	m.HandleFunc("GET /contexts", s.wrap(s.listContexts))
	m.HandleFunc("DELETE /contexts/{id}", s.wrap(s.removeContext))
	m.HandleFunc("POST /contexts/{id}/restart", s.wrap(s.restartContext))
	m.HandleFunc("/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return &httpError{http.StatusNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)}
	}))
	return m
}

// wrap turns a handler's error into a response: its status and message as
// text, which the SDKs show (a 404's body becomes a NotFoundError's
// message). Anything unclassed is a 500 whose cause is logged.
func (s *Server) wrap(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var he *httpError
		switch {
		case errors.As(err, &he):
		default:
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			he = &httpError{http.StatusInternalServerError, "internal error: " + err.Error()}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(he.status)
		io.WriteString(w, he.msg)
	}
}

// decodeBody reads a JSON body into v: 400 for malformed JSON, 413 past
// MaxRequestBytes. An empty body is {}.
//
// A body that is too large is still read (up to drainBytes) before the
// 413: answering while the client, or sbx's proxy in front of the
// server, is still sending would reset the connection under it, and the
// client would see a failed request (502 through the proxy) instead of
// the 413.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		return err
	}
	if len(b) > MaxRequestBytes {
		io.CopyN(io.Discard, r.Body, drainBytes)
		return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the request is larger than %d bytes", MaxRequestBytes)}
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &httpError{http.StatusBadRequest, "malformed JSON body: " + err.Error()}
	}
	return nil
}

// drainBytes is how much of a too large body decodeBody reads and drops.
const drainBytes = 64 << 20

func (s *Server) lookup(id string) (*codeContext, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.contexts[id]
	if c == nil {
		return nil, &httpError{http.StatusNotFound, fmt.Sprintf("context %q not found", id)}
	}
	return c, nil
}

// newContext starts a kernel for a new context and registers it.
func (s *Server) newContext(ctx context.Context, language, cwd string) (*codeContext, error) {
	kc, err := s.kernelConfig(language, cwd)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(cwd) {
		return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("cwd %q is not an absolute path", cwd)}
	}
	if st, err := os.Stat(cwd); err != nil || !st.IsDir() {
		return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("cwd %q is not a directory", cwd)}
	}
	ctx, cancel := context.WithTimeout(ctx, kernelStartTimeout)
	defer cancel()
	start := time.Now()
	k, err := startEngine(ctx, kc, s.log)
	if err != nil {
		return nil, fmt.Errorf("start a %s kernel: %w", language, err)
	}
	c := &codeContext{ID: newUUID(), Language: language, Cwd: cwd, sem: make(chan struct{}, 1), kernel: k}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		k.kill()
		return nil, errors.New("the server is closing")
	}
	s.contexts[c.ID] = c
	s.log.Info("context started", "context", c.ID, "language", language, "cwd", cwd, "duration", time.Since(start))
	return c, nil
}

// defaultContext returns language's default context, starting it if there
// is none (or it was removed).
func (s *Server) defaultContext(ctx context.Context, language string) (*codeContext, error) {
	s.mu.Lock()
	if id, ok := s.defaults[language]; ok {
		if c := s.contexts[id]; c != nil {
			s.mu.Unlock()
			return c, nil
		}
	}
	s.mu.Unlock()
	// Two first requests may both start one; the loser's is removed.
	c, err := s.newContext(ctx, language, s.cfg.Cwd)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if id, ok := s.defaults[language]; ok && s.contexts[id] != nil {
		other := s.contexts[id]
		delete(s.contexts, c.ID)
		s.mu.Unlock()
		c.kernel.kill()
		return other, nil
	}
	s.defaults[language] = c.ID
	s.mu.Unlock()
	return c, nil
}

func (s *Server) createContext(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Language string `json:"language"`
		Cwd      string `json:"cwd"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = s.cfg.Cwd
	}
	c, err := s.newContext(r.Context(), normLanguage(req.Language), cwd)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *Server) listContexts(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	out := make([]*codeContext, 0, len(s.contexts))
	for _, c := range s.contexts {
		out = append(out, c)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) removeContext(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	s.mu.Lock()
	c := s.contexts[id]
	delete(s.contexts, id)
	s.mu.Unlock()
	if c == nil {
		return &httpError{http.StatusNotFound, fmt.Sprintf("context %q not found", id)}
	}
	// An execution in it ends with the kernel.
	go func() {
		c.kernel.interrupt()
		c.sem <- struct{}{}
		c.kernel.kill()
	}()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) restartContext(w http.ResponseWriter, r *http.Request) error {
	c, err := s.lookup(r.PathValue("id"))
	if err != nil {
		return err
	}
	// A running execution is interrupted, then the kernel replaced.
	c.kernel.interrupt()
	select {
	case c.sem <- struct{}{}:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	defer func() { <-c.sem }()
	if err := s.replaceKernel(r.Context(), c); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// replaceKernel kills c's kernel and starts a new one. The caller holds
// c.sem.
func (s *Server) replaceKernel(ctx context.Context, c *codeContext) error {
	c.kernel.kill()
	kc, err := s.kernelConfig(c.Language, c.Cwd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, kernelStartTimeout)
	defer cancel()
	k, err := startEngine(ctx, kc, s.log)
	if err != nil {
		// The dead kernel stays; the next execution says so.
		return fmt.Errorf("restart context %s: %w", c.ID, err)
	}
	c.kernel = k
	s.log.Info("context restarted", "context", c.ID)
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func newUUID() string {
	b := []byte(newID())
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
}
