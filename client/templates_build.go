package client

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/sbxdev/sbx/wire"
)

// Build states ([TemplateBuild].Status).
const (
	BuildWaiting  = "waiting"
	BuildBuilding = "building"
	BuildReady    = "ready"
	BuildFailed   = "error"
)

// TemplateBuild is a template build on the server. Error, Step and
// ExitCode describe a failed build: the message, the 1-based step that
// failed and, for RUN, the command's exit code.
type TemplateBuild = wire.Build

// BuildEvent is one line of a build's log; the last has Kind "end".
type BuildEvent = wire.BuildEvent

// BuildOptions describe a template build from a Dockerfile.
type BuildOptions struct {
	// Name is the template to make; a template built earlier under that
	// name is replaced.
	Name string
	// ContextDir is the build context, a local directory sent to the
	// server (regular files, directories and symlinks; owners are not
	// sent), less what its .dockerignore excludes.
	ContextDir string
	// Dockerfile is the Dockerfile's text; empty means ContextDir's
	// Dockerfile (or DockerfilePath in it).
	Dockerfile     string
	DockerfilePath string
	// BuildArgs set ARG values.
	BuildArgs map[string]string
	// NoCache runs every step even when its layer is cached.
	NoCache bool
}

// StartTemplateBuild uploads the build context and starts a build; it
// returns once the server has checked the Dockerfile and the build runs.
// A Dockerfile the server cannot build (an unknown instruction, a COPY
// from outside the context) fails here with [ErrInvalidArgument].
func (c *Client) StartTemplateBuild(ctx context.Context, opts BuildOptions) (*TemplateBuild, error) {
	if opts.Name == "" {
		return nil, fmt.Errorf("sbx: template build: no name: %w", ErrInvalidArgument)
	}
	if opts.ContextDir == "" {
		return nil, fmt.Errorf("sbx: template build: no context directory: %w", ErrInvalidArgument)
	}
	if st, err := os.Stat(opts.ContextDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("sbx: template build: context %s is not a directory", opts.ContextDir)
	}
	q := url.Values{"name": {opts.Name}}
	if opts.DockerfilePath != "" {
		q.Set("dockerfile", opts.DockerfilePath)
	}
	keys := make([]string, 0, len(opts.BuildArgs))
	for k := range opts.BuildArgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("buildArg", k+"="+opts.BuildArgs[k])
	}
	if opts.NoCache {
		q.Set("noCache", "true")
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			if opts.Dockerfile != "" {
				if err := mw.WriteField("dockerfile", opts.Dockerfile); err != nil {
					return err
				}
			}
			part, err := mw.CreateFormFile("context", "context.tar.gz")
			if err != nil {
				return err
			}
			if err := writeContext(ctx, part, opts.ContextDir); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint("/sbx/v1/templates/builds", q), pr)
	if err != nil {
		pr.Close()
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var b TemplateBuild
	if err := c.doRaw(req, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// doRaw sends a prepared control-plane request and decodes its JSON answer.
func (c *Client) doRaw(req *http.Request, out any) error {
	if c.baseURL.Scheme != "http" && c.baseURL.Scheme != "https" {
		return fmt.Errorf("sbx: invalid server URL %q", c.baseURL.Opaque)
	}
	req.Header.Set("Accept", "application/json")
	if c.apiKey != "" {
		req.Header.Set(apiKeyHeader, c.apiKey)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("sbx: %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return decodeAPIError(resp)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("sbx: %s %s: decode response: %w", req.Method, req.URL.Path, err)
		}
	}
	return nil
}

// writeContext writes dir as a gzipped tar: regular files, directories and
// symlinks, with their modes; owners are left out.
func writeContext(ctx context.Context, w io.Writer, dir string) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	zw, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	rules, err := readDockerignore(dir)
	if err != nil {
		return fmt.Errorf("sbx: build context: %w", err)
	}
	negations := false
	for _, r := range rules {
		negations = negations || r.negate
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		if ignored(rules, filepath.ToSlash(rel)) {
			if d.IsDir() && !negations {
				return filepath.SkipDir // nothing below can come back
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return nil // sockets, devices: nothing to build from
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, hdr.Size)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sbx: build context: %w", err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// GetTemplateBuild returns build id's state.
func (c *Client) GetTemplateBuild(ctx context.Context, id string) (*TemplateBuild, error) {
	if id == "" {
		return nil, errNoID
	}
	var b TemplateBuild
	if _, err := c.do(ctx, http.MethodGet, "/sbx/v1/templates/builds/"+escape(id), nil, nil, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// FollowTemplateBuild calls fn with each log line of build id from offset
// on, as they come, until the build ends (the last line has Kind "end") or
// fn returns an error, which it returns.
func (c *Client) FollowTemplateBuild(ctx context.Context, id string, offset int, fn func(BuildEvent) error) error {
	if id == "" {
		return errNoID
	}
	q := url.Values{"follow": {"true"}, "offset": {strconv.Itoa(offset)}}
	resp, err := c.openStream(ctx, "build logs", http.MethodGet, "/sbx/v1/templates/builds/"+escape(id)+"/logs", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e BuildEvent
		if err := dec.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("sbx: build logs: the stream ended before the build: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("sbx: build logs: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
		if e.Kind == "end" {
			return nil
		}
	}
}

// BuildError is a build that failed: its last state, with the message, the
// step and (for RUN) the exit code.
type BuildError struct {
	Build *TemplateBuild
}

func (e *BuildError) Error() string {
	if e.Build.Error != "" {
		return "sbx: template build failed: " + e.Build.Error
	}
	return "sbx: template build failed"
}

// BuildTemplate starts a build, calls onEvent (which may be nil) with each
// log line as it comes, and returns the finished build: a *[BuildError]
// when it failed. Cancelling ctx stops following; the build goes on.
func (c *Client) BuildTemplate(ctx context.Context, opts BuildOptions, onEvent func(BuildEvent)) (*TemplateBuild, error) {
	b, err := c.StartTemplateBuild(ctx, opts)
	if err != nil {
		return nil, err
	}
	n := 0
	err = c.FollowTemplateBuild(ctx, b.BuildID, 0, func(e BuildEvent) error {
		n++
		if onEvent != nil {
			onEvent(e)
		}
		return nil
	})
	if err != nil {
		return b, err
	}
	b, err = c.GetTemplateBuild(ctx, b.BuildID)
	if err != nil {
		return nil, err
	}
	if b.Status != BuildReady {
		return b, &BuildError{Build: b}
	}
	return b, nil
}

// ignoreRule is one line of a .dockerignore file.
type ignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

// readDockerignore reads dir/.dockerignore, if there is one: one pattern
// a line ("#" comments), "*", "?", "[...]" and "**" (any number of
// directories) as in Docker, "!" re-including what an earlier line
// excluded. A pattern matches a path or any directory above it.
func readDockerignore(dir string) ([]ignoreRule, error) {
	b, err := os.ReadFile(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rules []ignoreRule
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{}
		if strings.HasPrefix(line, "!") {
			r.negate, line = true, strings.TrimSpace(line[1:])
		}
		line = strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(line)), "/")
		if line == "" {
			continue
		}
		re, err := ignoreRegexp(line)
		if err != nil {
			return nil, fmt.Errorf(".dockerignore: %q: %w", line, err)
		}
		r.re = re
		rules = append(rules, r)
	}
	return rules, nil
}

func ignoreRegexp(pat string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch {
		case c == '*' && strings.HasPrefix(pat[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case c == '*' && strings.HasPrefix(pat[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			j := strings.IndexByte(pat[i:], ']')
			if j < 0 {
				return nil, errors.New("unterminated [")
			}
			class := pat[i+1 : i+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + class + "]")
			i += j
		case c == '\\' && i+1 < len(pat):
			i++
			b.WriteString(regexp.QuoteMeta(string(pat[i])))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("(/.*)?$") // the path or anything below it
	return regexp.Compile(b.String())
}

// ignored reports whether rel (slash-separated) is excluded.
func ignored(rules []ignoreRule, rel string) bool {
	out := false
	for _, r := range rules {
		if r.re.MatchString(rel) {
			out = !r.negate
		}
	}
	return out
}
