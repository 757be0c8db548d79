package agent

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	b64 "encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const filesNobody = 65534

// filesTempDir returns a temporary directory that nobody can traverse.
func filesTempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// filesNobodyDir returns a directory owned by nobody.
func filesNobodyDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(filesTempDir(t), "nobody")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, filesNobody, filesNobody); err != nil {
		t.Fatal(err)
	}
	return d
}

func filesURL(q url.Values) string { return "http://agent" + FilesPath + "?" + q.Encode() }

// filesDo sends req and returns the status and body.
func filesDo(t *testing.T, hc *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func filesMultipart(t *testing.T, files ...string) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		w, err := mw.CreateFormFile("file", files[i])
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, files[i+1])
	}
	mw.Close()
	return mw.FormDataContentType(), &buf
}

func filesUpload(t *testing.T, hc *http.Client, q url.Values, ct string, body io.Reader, header ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, filesURL(q), body)
	req.Header.Set("Content-Type", ct)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, b := filesDo(t, hc, req)
	return res.StatusCode, b
}

func filesDownload(t *testing.T, hc *http.Client, q url.Values, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, filesURL(q), nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return filesDo(t, hc, req)
}

func wantFileAs(t *testing.T, p, content string, uid int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != content {
		t.Errorf("%s holds %q, want %q", p, b, content)
	}
	fi, _ := os.Stat(p)
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != uid {
		t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, uid)
	}
}

func TestFilesUpload(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			hc := httpClient(t, proto, testToken)
			dir := filesTempDir(t)

			// Two files in one multipart body, the part file names as paths.
			a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "sub/deeper/b.txt")
			ct, body := filesMultipart(t, a, "alpha", b, "bravo")
			code, out := filesUpload(t, hc, nil, ct, body)
			if code != http.StatusOK {
				t.Fatalf("multipart upload: %d %s", code, out)
			}
			var got []fileEntry
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			want := []fileEntry{{"a.txt", "file", a, nil}, {"b.txt", "file", b, nil}}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("answer %+v, want %+v", got, want)
			}
			wantFileAs(t, a, "alpha", 0)
			wantFileAs(t, b, "bravo", 0)

			// One part, its destination in the query (a browser's file
			// name is ignored); an existing file is overwritten.
			ct, body = filesMultipart(t, "photo.jpg", "again")
			if code, out := filesUpload(t, hc, url.Values{"path": {a}}, ct, body); code != http.StatusOK {
				t.Fatalf("multipart with path: %d %s", code, out)
			}
			wantFileAs(t, a, "again", 0)

			// Octet stream, gzip-encoded, with a mode.
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			io.WriteString(zw, "compressed")
			zw.Close()
			c := filepath.Join(dir, "c/c.sh")
			code, out = filesUpload(t, hc, url.Values{"path": {c}, "mode": {"0750"}}, "application/octet-stream", &gz, "Content-Encoding", "gzip")
			if code != http.StatusOK || !strings.Contains(string(out), `"path":"`+c+`"`) {
				t.Fatalf("octet-stream upload: %d %s", code, out)
			}
			wantFileAs(t, c, "compressed", 0)
			if fi, _ := os.Stat(c); fi.Mode().Perm() != 0o750 {
				t.Errorf("mode %v, want 0750", fi.Mode())
			}

			// Relative paths are taken from the user's home (root's here).
			name := fmt.Sprintf("sbx-files-test-%s-%d", proto, time.Now().UnixNano())
			t.Cleanup(func() { os.Remove("/root/" + name) })
			if code, out := filesUpload(t, hc, url.Values{"path": {name}}, "application/octet-stream", strings.NewReader("home")); code != http.StatusOK {
				t.Fatalf("relative path: %d %s", code, out)
			}
			wantFileAs(t, "/root/"+name, "home", 0)
		})
	}
}

func TestFilesDownload(t *testing.T) {
	dir := filesTempDir(t)
	p := filepath.Join(dir, "digits")
	content := "0123456789"
	os.WriteFile(p, []byte(content), 0o644)
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644)

	tests := []struct {
		name         string
		path         string
		rng          string
		status       int
		body         string
		contentRange string
	}{
		{"whole", p, "", 200, content, ""},
		{"empty", filepath.Join(dir, "empty"), "", 200, "", ""},
		{"range", p, "bytes=2-5", 206, "2345", "bytes 2-5/10"},
		{"suffix", p, "bytes=-3", 206, "789", "bytes 7-9/10"},
		{"open range", p, "bytes=8-", 206, "89", "bytes 8-9/10"},
		{"unsatisfiable", p, "bytes=20-30", 416, "", "bytes */10"},
		// A pseudo-file says size 0 and may not seek; its content is
		// what a read gives.
		{"proc", "/proc/version", "", 200, procVersion(t), ""},
	}
	for _, proto := range protocols {
		hc := httpClient(t, proto, testToken)
		for _, tt := range tests {
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				var h []string
				if tt.rng != "" {
					h = []string{"Range", tt.rng}
				}
				res, b := filesDownload(t, hc, url.Values{"path": {tt.path}}, h...)
				if res.StatusCode != tt.status {
					t.Fatalf("status %d (%s), want %d", res.StatusCode, b, tt.status)
				}
				if tt.status == 416 {
					if got := res.Header.Get("Content-Range"); got != tt.contentRange {
						t.Errorf("Content-Range %q, want %q", got, tt.contentRange)
					}
					return
				}
				if string(b) != tt.body {
					t.Errorf("body %q, want %q", b, tt.body)
				}
				if got := res.Header.Get("Content-Length"); got != strconv.Itoa(len(tt.body)) {
					t.Errorf("Content-Length %q, want %d", got, len(tt.body))
				}
				if got := res.Header.Get("Content-Type"); got != "application/octet-stream" {
					t.Errorf("Content-Type %q", got)
				}
				if got := res.Header.Get("Content-Range"); got != tt.contentRange {
					t.Errorf("Content-Range %q, want %q", got, tt.contentRange)
				}
			})
		}
	}
}

func TestFilesErrors(t *testing.T) {
	dir := filesTempDir(t)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	hc := httpClient(t, "http1", testToken)
	octet := "application/octet-stream"
	mpCT, _ := filesMultipart(t)

	dl := []struct {
		name   string
		q      url.Values
		status int
	}{
		{"missing file", url.Values{"path": {filepath.Join(dir, "nope")}}, 404},
		{"directory", url.Values{"path": {dir}}, 400},
		{"fifo", url.Values{"path": {fifo}}, 400},
		{"no path", nil, 400},
		{"unknown user", url.Values{"path": {file}, "username": {"no-such-user-sbx"}}, 400},
	}
	for _, tt := range dl {
		t.Run("GET "+tt.name, func(t *testing.T) {
			res, b := filesDownload(t, hc, tt.q)
			wantFilesError(t, res.StatusCode, b, tt.status)
		})
	}
	ul := []struct {
		name   string
		q      url.Values
		ct     string
		body   string
		status int
	}{
		{"parent is a file", url.Values{"path": {file + "/child"}}, octet, "x", 400},
		{"ancestor is a file", url.Values{"path": {file + "/a/b"}}, octet, "x", 400},
		{"directory", url.Values{"path": {dir}}, octet, "x", 400},
		{"fifo", url.Values{"path": {fifo}}, octet, "x", 400},
		{"no path", nil, octet, "x", 400},
		{"malformed multipart", nil, mpCT, "--not-the-boundary\r\ngarbage", 400},
		{"multipart cut short", nil, mpCT, "--" + strings.TrimPrefix(mpCT, "multipart/form-data; boundary=") + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filepath.Join(dir, "cut") + "\"\r\n\r\nsome data", 400},
		{"multipart without file", nil, mpCT, "--" + strings.TrimPrefix(mpCT, "multipart/form-data; boundary=") + "--\r\n", 400},
		{"no boundary", nil, "multipart/form-data", "x", 400},
		{"other content type", url.Values{"path": {filepath.Join(dir, "j")}}, "application/json", "{}", 400},
		{"bad mode", url.Values{"path": {filepath.Join(dir, "m")}, "mode": {"4755"}}, octet, "x", 400},
		{"bad gzip", url.Values{"path": {filepath.Join(dir, "g")}}, octet, "not gzip", 400},
	}
	for _, tt := range ul {
		t.Run("POST "+tt.name, func(t *testing.T) {
			var h []string
			if tt.name == "bad gzip" {
				h = []string{"Content-Encoding", "gzip"}
			}
			code, b := filesUpload(t, hc, tt.q, tt.ct, strings.NewReader(tt.body), h...)
			wantFilesError(t, code, b, tt.status)
		})
	}
	// A file whose upload failed is not left behind.
	if _, err := os.Stat(filepath.Join(dir, "cut")); !os.IsNotExist(err) {
		t.Errorf("cut-short upload left its file: %v", err)
	}
	req, _ := http.NewRequest(http.MethodDelete, filesURL(url.Values{"path": {file}}), nil)
	res, b := filesDo(t, hc, req)
	wantFilesError(t, res.StatusCode, b, 405)
}

func wantFilesError(t *testing.T, status int, body []byte, want int) {
	t.Helper()
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("status %d, body %q is not a JSON error", status, body)
	}
	if status != want || e.Code != want || e.Message == "" {
		t.Fatalf("got %d %+v, want %d with a message", status, e, want)
	}
}

// TestFilesAsUser checks that /files acts with the user's rights: the
// agent runs as root, a request for nobody must not.
func TestFilesAsUser(t *testing.T) {
	hc := httpClient(t, "http1", testToken)
	asNobody := url.Values{"username": {"nobody"}}
	with := func(q url.Values, k, v string) url.Values {
		out := url.Values{}
		for k, v := range q {
			out[k] = v
		}
		out.Set(k, v)
		return out
	}
	octet := "application/octet-stream"

	home := filesNobodyDir(t)
	// Directories created on the way and files are nobody's.
	p := filepath.Join(home, "x/y/z.txt")
	if code, b := filesUpload(t, hc, with(asNobody, "path", p), octet, strings.NewReader("zed")); code != 200 {
		t.Fatalf("upload as nobody: %d %s", code, b)
	}
	wantFileAs(t, p, "zed", filesNobody)
	for _, d := range []string{filepath.Join(home, "x"), filepath.Join(home, "x/y")} {
		fi, _ := os.Stat(d)
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != filesNobody || st.Gid != filesNobody {
			t.Errorf("%s owned by %d:%d, want nobody", d, st.Uid, st.Gid)
		}
	}
	// The same through the Basic authorization header.
	q := url.Values{"path": {filepath.Join(home, "basic")}}
	if code, b := filesUpload(t, hc, q, octet, strings.NewReader("b"), basicUser("nobody")...); code != 200 {
		t.Fatalf("upload as nobody (header): %d %s", code, b)
	}
	wantFileAs(t, filepath.Join(home, "basic"), "b", filesNobody)

	// Root's files and directories are out of reach.
	rootDir := filesTempDir(t)
	secret := filepath.Join(rootDir, "secret")
	os.WriteFile(secret, []byte("root only"), 0o600)
	shared := filepath.Join(rootDir, "shared")
	os.WriteFile(shared, []byte("readable"), 0o644)
	// A symlink nobody planted in its own directory, to root's file.
	link := filepath.Join(home, "link")
	os.Symlink(secret, link)
	os.Lchown(link, filesNobody, filesNobody)

	res, b := filesDownload(t, hc, with(asNobody, "path", secret))
	wantFilesError(t, res.StatusCode, b, 403)
	res, b = filesDownload(t, hc, with(asNobody, "path", link))
	wantFilesError(t, res.StatusCode, b, 403)
	if res, b := filesDownload(t, hc, with(asNobody, "path", shared)); res.StatusCode != 200 || string(b) != "readable" {
		t.Errorf("nobody reading a world-readable file: %d %q", res.StatusCode, b)
	}
	for _, target := range []string{filepath.Join(rootDir, "new"), filepath.Join(rootDir, "newdir/f"), shared, link} {
		code, b := filesUpload(t, hc, with(asNobody, "path", target), octet, strings.NewReader("pwned"))
		wantFilesError(t, code, b, 403)
	}
	ct, body := filesMultipart(t, filepath.Join(rootDir, "mp"), "pwned")
	code, b := filesUpload(t, hc, asNobody, ct, body)
	wantFilesError(t, code, b, 403)
	if b, _ := os.ReadFile(secret); string(b) != "root only" {
		t.Error("nobody changed root's file")
	}
	if b, _ := os.ReadFile(shared); string(b) != "readable" {
		t.Error("nobody changed a root-owned file")
	}
	for _, n := range []string{"new", "newdir", "mp"} {
		if _, err := os.Lstat(filepath.Join(rootDir, n)); !os.IsNotExist(err) {
			t.Errorf("nobody created %s in root's directory", n)
		}
	}
	// nobody may not chmod a file it can write but does not own.
	os.WriteFile(filepath.Join(home, "rootowned"), nil, 0o666)
	os.Chmod(filepath.Join(home, "rootowned"), 0o666)
	code, b = filesUpload(t, hc, with(with(asNobody, "path", filepath.Join(home, "rootowned")), "mode", "0777"), octet, strings.NewReader("x"))
	wantFilesError(t, code, b, 403)

	// Root, by contrast, reads the secret.
	if res, b := filesDownload(t, hc, url.Values{"path": {secret}}); res.StatusCode != 200 || string(b) != "root only" {
		t.Errorf("root reading its file: %d %q", res.StatusCode, b)
	}
}

func filesSign(path, op, user string, exp int64) string {
	raw := path + ":" + op + ":" + user + ":" + testToken
	if exp != 0 {
		raw += ":" + strconv.FormatInt(exp, 10)
	}
	sum := sha256.Sum256([]byte(raw))
	return "v1_" + b64.RawStdEncoding.EncodeToString(sum[:])
}

func TestFilesSignature(t *testing.T) {
	dir := filesTempDir(t)
	p := filepath.Join(dir, "signed")
	os.WriteFile(p, []byte("signed content"), 0o600)
	anon := httpClient(t, "http1", "")
	future := time.Now().Add(time.Hour).Unix()
	past := time.Now().Add(-time.Minute).Unix()

	q := func(path, user, sig string, exp int64) url.Values {
		v := url.Values{"path": {path}, "signature": {sig}}
		if user != "" {
			v.Set("username", user)
		}
		if exp != 0 {
			v.Set("signature_expiration", strconv.FormatInt(exp, 10))
		}
		return v
	}
	if res, b := filesDownload(t, anon, q(p, "", filesSign(p, "read", "", 0), 0)); res.StatusCode != 200 || string(b) != "signed content" {
		t.Fatalf("signed download: %d %q", res.StatusCode, b)
	}
	if res, b := filesDownload(t, anon, q(p, "", filesSign(p, "read", "", future), future)); res.StatusCode != 200 {
		t.Fatalf("signed download with expiry: %d %q", res.StatusCode, b)
	}
	np := filepath.Join(dir, "uploaded")
	code, b := filesUpload(t, anon, q(np, "", filesSign(np, "write", "", 0), 0), "application/octet-stream", strings.NewReader("up"))
	if code != 200 {
		t.Fatalf("signed upload: %d %s", code, b)
	}
	bad := []struct {
		name string
		q    url.Values
	}{
		{"wrong signature", q(p, "", "v1_AAAA", 0)},
		{"write signature to read", q(p, "", filesSign(p, "write", "", 0), 0)},
		{"other path", q(p, "", filesSign(np, "read", "", 0), 0)},
		{"expired", q(p, "", filesSign(p, "read", "", past), past)},
		{"expiry changed", q(p, "", filesSign(p, "read", "", past), future)},
		{"user added", q(p, "root", filesSign(p, "read", "", 0), 0)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			res, b := filesDownload(t, anon, tt.q)
			wantFilesError(t, res.StatusCode, b, 401)
		})
	}
	// A URL signed for nobody reads as nobody, whatever the Authorization
	// header says.
	res, b := filesDownload(t, anon, q(p, "nobody", filesSign(p, "read", "nobody", 0), 0), basicUser("root")...)
	wantFilesError(t, res.StatusCode, b, 403)
}

func procVersion(t *testing.T) string {
	b, err := os.ReadFile("/proc/version")
	if err != nil || len(b) == 0 {
		t.Fatalf("read /proc/version: %q %v", b, err)
	}
	return string(b)
}
