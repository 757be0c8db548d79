package agent

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/subtle"
	b64 "encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sbxdev/sbx/internal/agentapi"
	"github.com/sbxdev/sbx/internal/errdefs"
)

// FilesPath is envd's file transfer route:
//
//   - GET /files?path=P[&username=U] streams one file (Range supported);
//   - POST /files[?path=P][&username=U] writes files, from a
//     multipart/form-data body (one "file" part per file, the part's file
//     name as its path unless the query names one) or, with
//     Content-Type application/octet-stream, the body as the file at P.
//     Content-Encoding: gzip bodies are decompressed. The answer is a JSON
//     array of {"name","type","path"}.
//
// Relative paths (and "~/...") are taken from the user's home. Every open
// runs with the user's filesystem credentials (see [asUser]). An sbx
// extension, mode=0755 (octal, permission bits only) on POST, sets the mode
// of every file the request writes.
//
// Requests authenticate with the access token, or with envd's URL signature
// (signature, signature_expiration), which lets a URL made by the SDK's
// uploadUrl/downloadUrl be used without headers; see [Agent.filesRoute].
const FilesPath = "/files"

// filesCopyBuffer is the size of the buffer uploads are copied through.
const filesCopyBuffer = 1 << 20

// errNoSpace marks a write refused for lack of disk space or quota. envd
// answers it with 507, which the e2b SDKs turn into NotEnoughSpaceError.
var errNoSpace = errors.New("not enough disk space")

// filesHandler serves [FilesPath].
type filesHandler struct {
	a *Agent
}

// fileEntry is envd's answer for each file written.
type fileEntry struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Path     string            `json:"path"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// filesRoute returns the /files handler with its authentication: a request
// that carries a URL signature and no access token is checked against the
// signature; every other request goes through [Agent.requireToken].
func (a *Agent) filesRoute() http.Handler {
	files := filesHandler{a}
	withToken := a.requireToken(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(agentapi.AccessTokenHeader) != "" || !r.URL.Query().Has("signature") {
			withToken.ServeHTTP(w, r)
			return
		}
		if err := a.checkFileSignature(r, time.Now()); err != nil {
			a.log.Debug("bad file URL signature", "path", r.URL.Path, "err", err)
			writeJSONError(w, http.StatusUnauthorized, errdefs.Message(err))
			return
		}
		// Threat: a URL signed for the default user used with an
		// Authorization header naming root. The signature covers the
		// username parameter only, so the header must not choose.
		r = r.Clone(r.Context())
		r.Header.Del("Authorization")
		files.ServeHTTP(w, r)
	})
}

// checkFileSignature verifies envd's signature of a /files URL:
// "v1_" + base64(sha256(path:operation:username:token[:expiration])), with
// operation "read" for downloads and "write" for uploads. An expired
// signature is refused.
func (a *Agent) checkFileSignature(r *http.Request, now time.Time) error {
	q := r.URL.Query()
	op := "read"
	if r.Method == http.MethodPost {
		op = "write"
	}
	raw := q.Get("path") + ":" + op + ":" + q.Get("username") + ":" + a.config().AccessToken
	if exp := q.Get("signature_expiration"); exp != "" {
		n, err := strconv.ParseInt(exp, 10, 64)
		if err != nil {
			return errdefs.New(errdefs.ErrUnauthenticated, "invalid signature expiration")
		}
		if now.Unix() > n {
			return errdefs.New(errdefs.ErrUnauthenticated, "signature has expired")
		}
		raw += ":" + exp
	}
	sum := sha256.Sum256([]byte(raw))
	want := "v1_" + b64.RawStdEncoding.EncodeToString(sum[:])
	// Constant time, so a signature cannot be found byte by byte.
	if subtle.ConstantTimeCompare([]byte(q.Get("signature")), []byte(want)) != 1 {
		return errdefs.New(errdefs.ErrUnauthenticated, "invalid signature")
	}
	return nil
}

func (h filesHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var err error
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		err = h.download(w, r)
	case http.MethodPost:
		err = h.upload(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeJSONError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if err == nil {
		return
	}
	if errors.Is(err, errNoSpace) {
		h.a.log.Warn("file write failed", "path", r.URL.Path, "err", err)
		writeJSONError(w, http.StatusInsufficientStorage, errNoSpace.Error())
		return
	}
	writeError(h.a.log, w, r, err)
}

// user returns the account a request acts as: the username parameter, else
// the Basic authorization header, else the default user.
func (h filesHandler) user(r *http.Request) (*account, error) {
	name := r.URL.Query().Get("username")
	if name == "" {
		name = h.a.requestUser(r.Header)
	}
	return systemUsers.lookup(name)
}

// download serves one regular file with http.ServeContent: Content-Length,
// single and multiple ranges (206, 416), conditional requests.
func (h filesHandler) download(w http.ResponseWriter, r *http.Request) error {
	u, err := h.user(r)
	if err != nil {
		return err
	}
	p, err := resolvePath(u, r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	var f *os.File
	err = asUser(u, func() error {
		var oerr error
		// O_NONBLOCK: opening a FIFO must not hang the request.
		f, oerr = os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		return oerr
	})
	if err != nil {
		return fileError(p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileError(p, err)
	}
	if fi.IsDir() {
		return errdefs.New(errdefs.ErrInvalidArgument, "path %q is a directory", p)
	}
	if !fi.Mode().IsRegular() {
		return errdefs.New(errdefs.ErrInvalidArgument, "path %q is not a regular file", p)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filepath.Base(p)}))
	if fi.Size() == 0 {
		// Empty files and pseudo-files (/proc, /sys) say size 0, and the
		// latter may not seek, which http.ServeContent needs (it answered
		// 500 "seeker can't seek"): serve what a read gives, from memory
		// when it is small (ranges, Content-Length), else streamed.
		const small = 1 << 20
		b, err := io.ReadAll(io.LimitReader(f, small+1))
		if err != nil {
			return fileError(p, err)
		}
		if len(b) <= small {
			http.ServeContent(w, r, "", fi.ModTime(), bytes.NewReader(b))
			return nil
		}
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(b)
			io.Copy(w, f)
		}
		return nil
	}
	http.ServeContent(w, r, "", fi.ModTime(), f)
	return nil
}

// upload writes the files of a multipart or octet-stream body, streaming
// each to disk.
func (h filesHandler) upload(w http.ResponseWriter, r *http.Request) error {
	u, err := h.user(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var mode os.FileMode
	if s := q.Get("mode"); s != "" {
		n, err := strconv.ParseUint(s, 8, 32)
		if err != nil || n > 0o777 {
			return errdefs.New(errdefs.ErrInvalidArgument, "mode %q: want octal permission bits such as 0644", s)
		}
		mode = os.FileMode(n)
	}
	md, err := uploadMetadata(r.Header)
	if err != nil {
		return err
	}
	body, err := decodedBody(r)
	if err != nil {
		return err
	}
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "invalid Content-Type %q", ct)
	}
	buf := make([]byte, filesCopyBuffer)
	var entries []fileEntry
	switch mt {
	case "application/octet-stream":
		p, err := resolvePath(u, q.Get("path"))
		if err != nil {
			return err
		}
		e, err := writeFileAs(u, p, mode, md, body, buf)
		if err != nil {
			return err
		}
		entries = append(entries, e)
	case "multipart/form-data":
		if params["boundary"] == "" {
			return errdefs.New(errdefs.ErrInvalidArgument, "multipart body without a boundary")
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "malformed multipart body")
			}
			if part.FormName() != "file" {
				continue // NextPart skips what is left of it
			}
			dest := q.Get("path")
			switch {
			case dest != "" && len(entries) > 0:
				return errdefs.New(errdefs.ErrInvalidArgument, "path names one file; to write several, leave it out and name each part's file")
			case dest == "":
				dest = partFileName(part)
			}
			p, err := resolvePath(u, dest)
			if err != nil {
				return err
			}
			e, err := writeFileAs(u, p, mode, md, part, buf)
			if err != nil {
				return err
			}
			entries = append(entries, e)
		}
		if len(entries) == 0 {
			return errdefs.New(errdefs.ErrInvalidArgument, `no "file" part in the multipart body`)
		}
	default:
		return errdefs.New(errdefs.ErrInvalidArgument, "Content-Type must be multipart/form-data or application/octet-stream, not %q", mt)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(entries)
}

// decodedBody returns the request body, decompressed when its
// Content-Encoding is gzip.
func decodedBody(r *http.Request) (io.Reader, error) {
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return r.Body, nil
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "invalid gzip body")
		}
		return zr, nil
	default:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "unsupported Content-Encoding %q", enc)
	}
}

// partFileName returns the file name of a multipart part as sent.
// Part.FileName keeps only the last element, and a file name here is a
// path.
func partFileName(p *multipart.Part) string {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return ""
	}
	return params["filename"]
}

// writeFileAs writes src to p as u: missing parent directories are created
// (owned by u), an existing file is truncated and keeps its owner. mode, if
// not 0, is set on the file, and md replaces its metadata (see
// [setMetadata]). A file the call created is removed again when the write
// fails.
func writeFileAs(u *account, p string, mode os.FileMode, md map[string]string, src io.Reader, buf []byte) (fileEntry, error) {
	var f *os.File
	created := false
	err := asUser(u, func() error {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		var err error
		f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			// O_NONBLOCK: opening a FIFO must not hang the request.
			f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NONBLOCK, 0o644)
		} else {
			created = err == nil
		}
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = errdefs.New(errdefs.ErrInvalidArgument, "path %q is not a regular file", p)
		}
		if err == nil && mode != 0 {
			err = f.Chmod(mode) // as u: only the owner may
		}
		if err != nil {
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return fileEntry{}, fileError(p, err)
	}
	err = copyToFile(f, src, buf)
	if err == nil {
		// As u: the kernel lets only who may write the file change its
		// user attributes.
		err = asUser(u, func() error { return setMetadata(f, md) })
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fileError(p, cerr)
	}
	if err != nil {
		if created {
			_ = asUser(u, func() error { return os.Remove(p) })
		}
		return fileEntry{}, err
	}
	e := fileEntry{Name: filepath.Base(p), Type: "file", Path: p}
	if len(md) > 0 {
		e.Metadata = md
	}
	return e, nil
}

// copyToFile copies src to f. A failure to read src is the client's (a
// malformed or cut body); a failure to write is classed by fileError.
func copyToFile(f *os.File, src io.Reader, buf []byte) error {
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return fileError(f.Name(), err)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, rerr, "reading the request body failed (malformed or cut short)")
		}
	}
}

// fileError classes a filesystem error about path p. The path is the
// caller's own, so it may be shown.
func fileError(p string, err error) error {
	var de *errdefs.Error
	if errors.As(err, &de) {
		return err
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("%s: %w", p, err)
	}
	switch errno {
	case syscall.ENOENT:
		return errdefs.Wrap(errdefs.ErrNotFound, err, "path %q does not exist", p)
	case syscall.EACCES, syscall.EPERM, syscall.EROFS:
		return errdefs.Wrap(errdefs.ErrPermissionDenied, err, "permission denied on %q", p)
	case syscall.ENOTDIR:
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "a parent of %q is not a directory", p)
	case syscall.EISDIR:
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "path %q is a directory", p)
	case syscall.ELOOP:
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "too many symbolic links in %q", p)
	case syscall.ENAMETOOLONG:
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "path %q is too long", p)
	case syscall.ENXIO:
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "path %q is not a regular file", p)
	case syscall.EFBIG:
		return errdefs.Wrap(errdefs.ErrTooLarge, err, "file %q too large", p)
	case syscall.ENOSPC, syscall.EDQUOT:
		return fmt.Errorf("%s: %w: %w", p, errNoSpace, err)
	}
	return fmt.Errorf("%s: %w", p, err)
}
