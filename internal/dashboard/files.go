package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	pb "github.com/sbxdev/sbx/gen/filesystem"
	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp"
	"github.com/sbxdev/sbx/wire"
)

// maxUpload bounds the body of a file upload.
const maxUpload = 100 << 20

// filesPath is envd's file transfer route, which the agent serves.
const filesPath = "/files"

// maxPath bounds the length of a path parameter.
const maxPath = 4096

// filePath checks the path parameter of r. Empty is the home when home is
// true, else refused. ".." is refused: the page names paths from / or the
// home, and a path that climbs is a link someone else made up.
func filePath(r *http.Request, home bool) (string, error) {
	p := r.URL.Query().Get("path")
	switch {
	case p == "" && home:
		return "~", nil
	case p == "":
		return "", errdefs.New(errdefs.ErrInvalidArgument, "path is required")
	case len(p) > maxPath:
		return "", errdefs.New(errdefs.ErrInvalidArgument, "path is longer than %d bytes", maxPath)
	case strings.ContainsRune(p, 0):
		return "", errdefs.New(errdefs.ErrInvalidArgument, "path contains a NUL byte")
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", errdefs.New(errdefs.ErrInvalidArgument, "path must not contain \"..\": name it from / or from the home")
		}
	}
	return p, nil
}

// fileTypes names the agent's file types as the dashboard does.
var fileTypes = map[pb.FileType]string{
	pb.FileType_FILE_TYPE_FILE:      "file",
	pb.FileType_FILE_TYPE_DIRECTORY: "dir",
	pb.FileType_FILE_TYPE_SYMLINK:   "symlink",
}

// listFiles serves GET /dashboard/api/sandboxes/{id}/files?path=P: the
// entries of directory P (the home when empty).
func (s *Server) listFiles(w http.ResponseWriter, r *http.Request, id string) error {
	p, err := filePath(r, true)
	if err != nil {
		return err
	}
	b, err := s.agents.running(r.Context(), id)
	if err != nil {
		return err
	}
	resp, err := b.filesystem().ListDir(r.Context(), request(b, &pb.ListDirRequest{Path: p, Depth: 1}))
	if err != nil {
		return agentError(err, "list directory")
	}
	out := make([]wire.DashboardFile, 0, len(resp.Msg.GetEntries()))
	for _, e := range resp.Msg.GetEntries() {
		typ, ok := fileTypes[e.GetType()]
		if !ok {
			typ = "file"
		}
		f := wire.DashboardFile{Name: e.GetName(), Path: e.GetPath(), Type: typ, Size: e.GetSize(),
			Mode: fmt.Sprintf("%04o", e.GetMode()&0o7777)}
		if t := e.GetModifiedTime(); t != nil {
			f.ModifiedTime = t.AsTime().UTC()
		}
		out = append(out, f)
	}
	writeJSON(w, out)
	return nil
}

// removeFile serves DELETE /dashboard/api/sandboxes/{id}/files?path=P.
func (s *Server) removeFile(w http.ResponseWriter, r *http.Request, id string) error {
	p, err := filePath(r, false)
	if err != nil {
		return err
	}
	b, err := s.agents.running(r.Context(), id)
	if err != nil {
		return err
	}
	if _, err := b.filesystem().Remove(r.Context(), request(b, &pb.RemoveRequest{Path: p})); err != nil {
		return agentError(err, "remove")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// makeDir serves POST /dashboard/api/sandboxes/{id}/files/dir?path=P: P
// and its missing parents.
func (s *Server) makeDir(w http.ResponseWriter, r *http.Request, id string) error {
	p, err := filePath(r, false)
	if err != nil {
		return err
	}
	b, err := s.agents.running(r.Context(), id)
	if err != nil {
		return err
	}
	if _, err := b.filesystem().MakeDir(r.Context(), request(b, &pb.MakeDirRequest{Path: p})); err != nil {
		return agentError(err, "make directory")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// filesURL is the agent's /files URL for path p.
func (b *box) filesURL(p string) string {
	return b.base + filesPath + "?" + url.Values{"path": {p}}.Encode()
}

// agentRefusal answers the agent's error answer resp as the agent did
// (its statuses and messages are envd's, safe to show) and returns nil,
// or returns an error for a status the agent does not give for the
// caller's mistakes.
func agentRefusal(w http.ResponseWriter, resp *http.Response, what string) error {
	var body wire.Error
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusConflict,
		http.StatusRequestEntityTooLarge, http.StatusInsufficientStorage:
		msg := body.Message
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		errhttp.WriteMessage(w, resp.StatusCode, msg)
		return nil
	}
	return fmt.Errorf("%s: the agent answered %d %s", what, resp.StatusCode, body.Message)
}

// readFile serves GET /dashboard/api/sandboxes/{id}/files/content?path=P:
// the file's bytes, never as something a browser would render.
func (s *Server) readFile(w http.ResponseWriter, r *http.Request, id string) error {
	p, err := filePath(r, false)
	if err != nil {
		return err
	}
	b, err := s.agents.running(r.Context(), id)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, b.filesURL(p), nil)
	if err != nil {
		return err
	}
	req.Header.Set(agentapi.AccessTokenHeader, b.sb.EnvdToken)
	resp, err := b.a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("read file: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return agentRefusal(w, resp, "read file")
	}
	h := w.Header()
	// Threat: a file the sandbox wrote (HTML, SVG) rendered by the
	// browser as a page of the dashboard's origin.
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if r.URL.Query().Get("download") == "1" {
		h.Set("Content-Disposition", "attachment; filename*=UTF-8''"+url.PathEscape(path.Base(p)))
	}
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(http.StatusOK)
	io.Copy(w, resp.Body)
	return nil
}

// writeFile serves PUT /dashboard/api/sandboxes/{id}/files/content?path=P:
// the body becomes the file (at most maxUpload bytes).
func (s *Server) writeFile(w http.ResponseWriter, r *http.Request, id string) error {
	p, err := filePath(r, false)
	if err != nil {
		return err
	}
	if r.ContentLength > maxUpload {
		return errdefs.New(errdefs.ErrTooLarge, "a file upload is at most %d MiB", maxUpload>>20)
	}
	b, err := s.agents.running(r.Context(), id)
	if err != nil {
		return err
	}
	body := http.MaxBytesReader(w, r.Body, maxUpload)
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, b.filesURL(p), body)
	if err != nil {
		return err
	}
	req.ContentLength = r.ContentLength
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(agentapi.AccessTokenHeader, b.sb.EnvdToken)
	resp, err := b.a.hc.Do(req)
	if err != nil {
		if _, ok := errorsAsMaxBytes(err); ok {
			return errdefs.Wrap(errdefs.ErrTooLarge, err, "a file upload is at most %d MiB", maxUpload>>20)
		}
		return fmt.Errorf("write file: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return agentRefusal(w, resp, "write file")
	}
	io.Copy(io.Discard, resp.Body)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func errorsAsMaxBytes(err error) (*http.MaxBytesError, bool) {
	var mbe *http.MaxBytesError
	ok := errors.As(err, &mbe)
	return mbe, ok
}
