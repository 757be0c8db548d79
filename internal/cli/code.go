package cli

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sbxdev/sbx/client"
)

// maxCodeBytes bounds the code `sbx code -` reads from stdin (the code
// interpreter's own bound on a request).
const maxCodeBytes = 8 << 20

// runCode implements `sbx code ID [--language L] [--context C] CODE|-`: it
// runs code in a code interpreter sandbox, prints its output as it comes
// (stdout to stdout, stderr to stderr), then the main result's text, and
// saves image and PDF results to files (--out DIR), naming each on
// stderr. Code that raises an error exits 1 after printing its traceback.
func runCode(e *env, args []string) int {
	fs := e.flags("code")
	lang := fs.String("language", "", "run in the default context of `LANG`: python (default), javascript, typescript, bash or r")
	ctxID := fs.String("context", "", "run in context `ID` (see the SDKs' createCodeContext)")
	envs := kvFlag{}
	fs.Var(envs, "env", "environment variable `K=V` for this run (repeatable)")
	out := fs.String("out", ".", "`DIR` to save image and PDF results in")
	timeout := fs.Duration("timeout", 0, "interrupt the run after `D` (0: no limit)")
	rest, code, ok := e.parseHead(fs, args)
	if !ok {
		return code
	}
	if len(rest) == 0 {
		return e.usageErr(fs, "no sandbox ID")
	}
	id := rest[0]
	// Flags may follow the ID too.
	if rest, code, ok = e.parseHead(fs, rest[1:]); !ok {
		return code
	}
	if len(rest) == 0 {
		return e.usageErr(fs, "no code (give CODE, or - to read it from stdin)")
	}
	if len(rest) > 1 {
		return e.usageErr(fs, "one CODE argument (quote it), or -")
	}
	if *lang != "" && *ctxID != "" {
		return e.usageErr(fs, "--language or --context, not both")
	}
	src := rest[0]
	if src == "-" {
		b, err := io.ReadAll(io.LimitReader(e.stdin, maxCodeBytes+1))
		if err != nil {
			return e.fail("code", err)
		}
		if len(b) > maxCodeBytes {
			return e.fail("code", fmt.Errorf("the code on stdin is over %d bytes", maxCodeBytes))
		}
		src = string(b)
	}
	c, err := e.client()
	if err != nil {
		return e.fail("code", err)
	}
	sb, err := attach(e.ctx, c, id)
	if err != nil {
		return e.failOn("code", id, err)
	}
	n := 0
	var saveErr error
	var main *client.CodeResult
	ex, err := sb.RunCode(e.ctx, src, &client.RunCodeOptions{
		Language: *lang, Context: *ctxID, Envs: envs.orNil(), Timeout: *timeout,
		OnStdout: func(s string) { io.WriteString(e.stdout, s) },
		OnStderr: func(s string) { io.WriteString(e.stderr, s) },
		OnResult: func(r client.CodeResult) {
			n++
			for _, f := range []struct{ ext, data string }{{"png", r.PNG}, {"jpeg", r.JPEG}, {"svg", r.SVG}, {"pdf", r.PDF}} {
				if f.data == "" {
					continue
				}
				path, err := saveResult(*out, n, f.ext, f.data)
				if err != nil {
					saveErr = err
					continue
				}
				fmt.Fprintf(e.stderr, "sbx code: result %d saved to %s\n", n, path)
			}
			if r.IsMainResult {
				main = &r
			}
		},
	})
	if err != nil {
		return e.failOn("code", id, err)
	}
	if main != nil && main.Text != "" {
		fmt.Fprintln(e.stdout, main.Text)
	}
	if ex.Error != nil {
		fmt.Fprintln(e.stderr, strings.TrimRight(ex.Error.Traceback, "\n"))
		fmt.Fprintf(e.stderr, "sbx code: %s: %s\n", ex.Error.Name, ex.Error.Value)
		return exitError
	}
	if saveErr != nil {
		return e.fail("code", saveErr)
	}
	return exitOK
}

// saveResult writes result n's data in format ext (base64, but for SVG)
// to dir and returns its path.
func saveResult(dir string, n int, ext, data string) (string, error) {
	b := []byte(data)
	if ext != "svg" {
		var err error
		if b, err = base64.StdEncoding.DecodeString(data); err != nil {
			return "", fmt.Errorf("result %d: its %s is not base64: %w", n, ext, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("result-%s-%d.%s", time.Now().UTC().Format("20060102T150405"), n, ext))
	return path, os.WriteFile(path, b, 0o644)
}
