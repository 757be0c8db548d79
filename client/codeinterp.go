package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// CodeInterpreterPort is the sandbox port of the code interpreter's server
// in sandboxes of the code-interpreter-v1 template: what [Sandbox.RunCode]
// and the code context calls talk to, as @e2b/code-interpreter does.
const CodeInterpreterPort = 49999

// CodeContext is a stateful context of the code interpreter: one kernel of
// one language, whose variables survive from one [Sandbox.RunCode] to the
// next.
type CodeContext struct {
	ID       string `json:"id"`
	Language string `json:"language"`
	Cwd      string `json:"cwd"`
}

// CodeContextOptions are the settings of a new [CodeContext]; the zero
// value is a Python context in the user's home directory.
type CodeContextOptions struct {
	// Language is "python" (default), "javascript", "typescript",
	// "bash" or "r", as the sandbox's server supports them.
	Language string `json:"language,omitempty"`
	// Cwd is the context's working directory.
	Cwd string `json:"cwd,omitempty"`
}

// RunCodeOptions are the options of [Sandbox.RunCode]. The callbacks are
// called in the order the output comes, from the goroutine that called
// RunCode, before it returns.
type RunCodeOptions struct {
	// Language runs the code in the default context of this language;
	// Context, when not empty, names a context instead (not both).
	Language string
	Context  string
	// Envs are environment variables for this run only.
	Envs map[string]string
	// Timeout bounds the run (0: none beyond ctx): the execution is
	// interrupted and RunCode returns an error matching
	// context.DeadlineExceeded.
	Timeout time.Duration
	// OnStdout and OnStderr get each piece of output as it comes.
	OnStdout, OnStderr func(text string)
	// OnResult gets each result (display outputs and the main result).
	OnResult func(CodeResult)
	// OnError gets the execution's error, if it raised one.
	OnError func(ExecutionError)
}

// Execution is what one run of code produced.
type Execution struct {
	Results []CodeResult
	Stdout  []string
	Stderr  []string
	// Error is the error the code raised; nil when it ran to its end.
	Error *ExecutionError
	// ExecutionCount is the context's count of executions so far.
	ExecutionCount int
}

// Text is the main result's text, "" when there is none.
func (e *Execution) Text() string {
	for _, r := range e.Results {
		if r.IsMainResult {
			return r.Text
		}
	}
	return ""
}

// ExecutionError is an error raised by the code: its class, its message and
// the traceback.
type ExecutionError struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback"`
}

// Error implements error.
func (e *ExecutionError) Error() string { return e.Name + ": " + e.Value }

// CodeResult is one result of an execution, in every format the kernel gave it
// (as E2B's SDKs return it). Binary formats (PNG, JPEG, PDF) are base64.
type CodeResult struct {
	IsMainResult bool            `json:"is_main_result"`
	Text         string          `json:"text,omitempty"`
	HTML         string          `json:"html,omitempty"`
	Markdown     string          `json:"markdown,omitempty"`
	SVG          string          `json:"svg,omitempty"`
	PNG          string          `json:"png,omitempty"`
	JPEG         string          `json:"jpeg,omitempty"`
	PDF          string          `json:"pdf,omitempty"`
	LaTeX        string          `json:"latex,omitempty"`
	JavaScript   string          `json:"javascript,omitempty"`
	JSON         json.RawMessage `json:"json,omitempty"`
	// Data is a pandas DataFrame's columns; Chart the chart a matplotlib
	// figure shows (its "type" says which: line, scatter, bar, pie,
	// box_and_whisker, superchart).
	Data  json.RawMessage `json:"data,omitempty"`
	Chart json.RawMessage `json:"chart,omitempty"`
	// Raw holds every format, as the server sent them.
	Raw map[string]json.RawMessage `json:"-"`
}

// codeDo sends a request to the sandbox's code interpreter and returns its
// response; a status of 400 or above becomes an *APIError.
func (s *Sandbox) codeDo(ctx context.Context, method, path string, body any, op string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("sbx: %s: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.c.baseURL.String()+path, rd)
	if err != nil {
		return nil, fmt.Errorf("sbx: %s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.TrafficAccessToken != "" {
		req.Header.Set(TrafficTokenHeader, s.TrafficAccessToken)
	}
	hc := *s.c.http
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &sandboxTransport{base: base, id: s.ID, token: s.EnvdAccessToken, userAgent: s.c.userAgent, port: CodeInterpreterPort}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sbx: %s: %w", op, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeAPIError(resp)
	}
	return resp, nil
}

// RunCode runs code in the sandbox's code interpreter (a sandbox of the
// code-interpreter-v1 template) and returns what it produced, calling
// opts' callbacks as the output streams in. An error the code raises is
// Execution.Error, not an error of RunCode.
func (s *Sandbox) RunCode(ctx context.Context, code string, opts *RunCodeOptions) (*Execution, error) {
	if opts == nil {
		opts = &RunCodeOptions{}
	}
	if opts.Language != "" && opts.Context != "" {
		return nil, fmt.Errorf("sbx: run code: give a language or a context, not both: %w", ErrInvalidArgument)
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	body := map[string]any{"code": code}
	if opts.Language != "" {
		body["language"] = opts.Language
	}
	if opts.Context != "" {
		body["context_id"] = opts.Context
	}
	if len(opts.Envs) > 0 {
		body["env_vars"] = opts.Envs
	}
	resp, err := s.codeDo(ctx, http.MethodPost, "/execute", body, "run code")
	if err != nil {
		return nil, deadline(ctx, err)
	}
	defer resp.Body.Close()
	ex := &Execution{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	ended := false
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var msg struct {
			Type  string `json:"type"`
			Text  string `json:"text"`
			Count int    `json:"execution_count"`
			ExecutionError
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			return nil, fmt.Errorf("sbx: run code: a line of the output is not JSON: %w", err)
		}
		switch msg.Type {
		case "stdout":
			ex.Stdout = append(ex.Stdout, msg.Text)
			if opts.OnStdout != nil {
				opts.OnStdout(msg.Text)
			}
		case "stderr":
			ex.Stderr = append(ex.Stderr, msg.Text)
			if opts.OnStderr != nil {
				opts.OnStderr(msg.Text)
			}
		case "result":
			var r CodeResult
			if err := json.Unmarshal(line, &r); err != nil {
				return nil, fmt.Errorf("sbx: run code: a result: %w", err)
			}
			if err := json.Unmarshal(line, &r.Raw); err == nil {
				delete(r.Raw, "type")
				delete(r.Raw, "is_main_result")
			}
			ex.Results = append(ex.Results, r)
			if opts.OnResult != nil {
				opts.OnResult(r)
			}
		case "error":
			e := msg.ExecutionError
			ex.Error = &e
			if opts.OnError != nil {
				opts.OnError(e)
			}
		case "number_of_executions":
			ex.ExecutionCount = msg.Count
		case "end_of_execution":
			ended = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, deadline(ctx, fmt.Errorf("sbx: run code: %w", err))
	}
	if !ended {
		return nil, deadline(ctx, fmt.Errorf("sbx: run code: the output ended before the execution did: %w", ErrUnavailable))
	}
	return ex, nil
}

// deadline makes err match context.DeadlineExceeded when ctx's deadline
// passed.
func deadline(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
	}
	return err
}

// CreateCodeContext makes a new stateful context in the sandbox's code
// interpreter.
func (s *Sandbox) CreateCodeContext(ctx context.Context, opts *CodeContextOptions) (*CodeContext, error) {
	if opts == nil {
		opts = &CodeContextOptions{}
	}
	resp, err := s.codeDo(ctx, http.MethodPost, "/contexts", opts, "create code context")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var c CodeContext
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return nil, fmt.Errorf("sbx: create code context: %w", err)
	}
	return &c, nil
}

// ListCodeContexts lists the code interpreter's contexts.
func (s *Sandbox) ListCodeContexts(ctx context.Context) ([]CodeContext, error) {
	resp, err := s.codeDo(ctx, http.MethodGet, "/contexts", nil, "list code contexts")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var cs []CodeContext
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil {
		return nil, fmt.Errorf("sbx: list code contexts: %w", err)
	}
	return cs, nil
}

// RemoveCodeContext removes context id; its kernel ends.
func (s *Sandbox) RemoveCodeContext(ctx context.Context, id string) error {
	resp, err := s.codeDo(ctx, http.MethodDelete, "/contexts/"+escape(id), nil, "remove code context")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// RestartCodeContext replaces context id's kernel with a fresh one: its
// variables are gone, its id and settings stay.
func (s *Sandbox) RestartCodeContext(ctx context.Context, id string) error {
	resp, err := s.codeDo(ctx, http.MethodPost, "/contexts/"+escape(id)+"/restart", nil, "restart code context")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
