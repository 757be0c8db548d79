package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"strconv"
)

// ErrNoSpace: the sandbox's disk (or the user's quota) is full. The agent
// answers 507, as envd does.
var ErrNoSpace = errors.New("not enough disk space")

// FileOptions choose the user a file operation acts as.
type FileOptions struct {
	// User is the user whose permissions apply and who owns what is
	// created; empty means the template's default user ("user"). Relative
	// paths are taken from this user's home.
	User string
}

// WriteOptions describe how [Sandbox.WriteFile] and [Sandbox.WriteFiles]
// write.
type WriteOptions struct {
	// User: see [FileOptions].
	User string
	// Mode, when not 0, sets the permission bits (0o777 at most) of every
	// file written. Otherwise a new file gets 0644 less the umask and an
	// existing file keeps its mode.
	Mode os.FileMode
}

// WriteEntry is one file for [Sandbox.WriteFiles].
type WriteEntry struct {
	// Path is where the file goes in the sandbox; relative paths are taken
	// from the user's home.
	Path string
	// Data is the file's content, read to EOF.
	Data io.Reader
}

// WriteInfo describes a file written, as the agent reports it.
type WriteInfo struct {
	Name string `json:"name"`
	// Type is "file".
	Type string `json:"type"`
	// Path is the absolute path in the sandbox.
	Path string `json:"path"`
}

// files returns an HTTP client for the sandbox's /files route.
func (s *Sandbox) filesHTTP() *http.Client {
	hc := *s.c.http
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &sandboxTransport{base: base, id: s.ID, token: s.EnvdAccessToken, userAgent: s.c.userAgent}
	return &hc
}

func filesQuery(path, user string) url.Values {
	q := url.Values{}
	if path != "" {
		q.Set("path", path)
	}
	if user != "" {
		q.Set("username", user)
	}
	return q
}

// filesDo sends a /files request; a status of 400 or above becomes an
// *APIError (matching [ErrNoSpace] for 507).
func (s *Sandbox) filesDo(req *http.Request, op string) (*http.Response, error) {
	if s.c.baseURL.Scheme != "http" && s.c.baseURL.Scheme != "https" {
		return nil, fmt.Errorf("sbx: invalid server URL %q", s.c.baseURL.Opaque)
	}
	resp, err := s.filesHTTP().Do(req)
	if err != nil {
		return nil, fmt.Errorf("sbx: %s: %w", op, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		err := decodeAPIError(resp)
		if resp.StatusCode == http.StatusInsufficientStorage {
			err = &noSpaceError{err.(*APIError)}
		}
		return nil, err
	}
	return resp, nil
}

// noSpaceError is a 507: it matches [ErrNoSpace] as well as being an
// *APIError.
type noSpaceError struct{ *APIError }

func (e *noSpaceError) Is(target error) bool { return target == ErrNoSpace }
func (e *noSpaceError) Unwrap() error        { return e.APIError }

// WriteFile writes the content of r to path in the sandbox, streaming it
// (r is not held in memory): missing parent directories are created, an
// existing file is replaced. Files and directories created are owned by
// the user.
func (s *Sandbox) WriteFile(ctx context.Context, path string, r io.Reader, opts *WriteOptions) (*WriteInfo, error) {
	if path == "" {
		return nil, fmt.Errorf("sbx: write file: empty path: %w", ErrInvalidArgument)
	}
	if opts == nil {
		opts = &WriteOptions{}
	}
	if r == nil {
		r = http.NoBody
	}
	q := writeQuery(path, opts)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.endpoint("/files", q), r)
	if err != nil {
		return nil, fmt.Errorf("sbx: write file: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	infos, err := s.decodeWrite(req, "write "+path)
	if err != nil {
		return nil, err
	}
	if len(infos) != 1 {
		return nil, fmt.Errorf("sbx: write %s: the agent reported %d files, want 1", path, len(infos))
	}
	return &infos[0], nil
}

func writeQuery(path string, opts *WriteOptions) url.Values {
	q := filesQuery(path, opts.User)
	if opts.Mode != 0 {
		q.Set("mode", "0"+strconv.FormatUint(uint64(opts.Mode.Perm()), 8))
	}
	return q
}

// WriteFiles writes several files in one multipart request, streamed:
// each entry's Data is read only when its turn comes.
func (s *Sandbox) WriteFiles(ctx context.Context, files []WriteEntry, opts *WriteOptions) ([]WriteInfo, error) {
	if len(files) == 0 {
		return nil, nil
	}
	for _, f := range files {
		if f.Path == "" {
			return nil, fmt.Errorf("sbx: write files: empty path: %w", ErrInvalidArgument)
		}
	}
	if opts == nil {
		opts = &WriteOptions{}
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, f := range files {
			w, err := mw.CreateFormFile("file", f.Path)
			if err == nil && f.Data != nil {
				_, err = io.Copy(w, f.Data)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.endpoint("/files", writeQuery("", opts)), pr)
	if err != nil {
		pr.Close()
		return nil, fmt.Errorf("sbx: write files: %w", err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	infos, err := s.decodeWrite(req, "write files")
	pr.Close() // ends the writer goroutine if the request failed early
	return infos, err
}

func (s *Sandbox) decodeWrite(req *http.Request, op string) ([]WriteInfo, error) {
	resp, err := s.filesDo(req, op)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var infos []WriteInfo
	if err := json.NewDecoder(resp.Body).Decode(&infos); err != nil {
		return nil, fmt.Errorf("sbx: %s: decode response: %w", op, err)
	}
	return infos, nil
}

// OpenFile opens path in the sandbox for reading and returns its content
// as a stream, with its size. The caller must close it; cancelling ctx
// ends the stream.
func (s *Sandbox) OpenFile(ctx context.Context, path string, opts *FileOptions) (io.ReadCloser, int64, error) {
	return s.openRange(ctx, path, opts, "")
}

// OpenFileRange is [Sandbox.OpenFile] for the bytes from offset on, at
// most length of them (length <= 0: to the end). The size returned is that
// of the part sent.
func (s *Sandbox) OpenFileRange(ctx context.Context, path string, offset, length int64, opts *FileOptions) (io.ReadCloser, int64, error) {
	if offset < 0 {
		return nil, 0, fmt.Errorf("sbx: read %s: negative offset: %w", path, ErrInvalidArgument)
	}
	rng := fmt.Sprintf("bytes=%d-", offset)
	if length > 0 {
		rng += strconv.FormatInt(offset+length-1, 10)
	}
	return s.openRange(ctx, path, opts, rng)
}

func (s *Sandbox) openRange(ctx context.Context, path string, opts *FileOptions, rng string) (io.ReadCloser, int64, error) {
	if path == "" {
		return nil, 0, fmt.Errorf("sbx: read file: empty path: %w", ErrInvalidArgument)
	}
	if opts == nil {
		opts = &FileOptions{}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.c.endpoint("/files", filesQuery(path, opts.User)), nil)
	if err != nil {
		return nil, 0, fmt.Errorf("sbx: read file: %w", err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := s.filesDo(req, "read "+path)
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// ReadFile returns the whole content of path in the sandbox.
func (s *Sandbox) ReadFile(ctx context.Context, path string, opts *FileOptions) ([]byte, error) {
	rc, size, err := s.OpenFile(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if size > 0 {
		buf.Grow(int(size))
	}
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, fmt.Errorf("sbx: read %s: %w", path, err)
	}
	return buf.Bytes(), nil
}
