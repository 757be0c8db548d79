package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
)

// fakeFiles is a small stand-in for the agent's /files route behind the
// server's proxy: it stores files in memory and records what it was sent.
type fakeFiles struct {
	mu    sync.Mutex
	files map[string]string
	users []string
	modes []string
}

func (f *fakeFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("E2b-Sandbox-Id") != "sb1" || r.Header.Get("X-Access-Token") != "tok" || r.URL.Path != "/files" {
		http.Error(w, `{"code":401,"message":"bad routing headers"}`, 401)
		return
	}
	q := r.URL.Query()
	f.users = append(f.users, q.Get("username"))
	f.modes = append(f.modes, q.Get("mode"))
	type entry struct{ Name, Type, Path string }
	switch r.Method {
	case http.MethodGet:
		data, ok := f.files[q.Get("path")]
		if !ok {
			w.WriteHeader(404)
			io.WriteString(w, `{"code":404,"message":"no such file"}`)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(data))
	case http.MethodPost:
		var out []entry
		if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
			mr, err := r.MultipartReader()
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			for {
				p, err := mr.NextPart()
				if err != nil {
					break
				}
				b, _ := io.ReadAll(p)
				f.files[p.FileName()] = string(b)
				out = append(out, entry{p.FileName(), "file", p.FileName()})
			}
		} else {
			if q.Get("path") == "/full" {
				w.WriteHeader(507)
				io.WriteString(w, `{"code":507,"message":"not enough disk space"}`)
				return
			}
			b, _ := io.ReadAll(r.Body)
			f.files[q.Get("path")] = string(b)
			out = append(out, entry{q.Get("path"), "file", q.Get("path")})
		}
		json.NewEncoder(w).Encode(out)
	}
}

func TestFiles(t *testing.T) {
	fake := &fakeFiles{files: map[string]string{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c := client.New(srv.URL, "key")
	sb := c.Attach(&client.SandboxInfo{SandboxID: "sb1", EnvdAccessToken: "tok"})
	ctx := context.Background()

	info, err := sb.WriteFile(ctx, "/a", strings.NewReader("alpha"), &client.WriteOptions{User: "root", Mode: 0o755})
	if err != nil || info.Path != "/a" || info.Type != "file" {
		t.Fatalf("WriteFile: %+v, %v", info, err)
	}
	infos, err := sb.WriteFiles(ctx, []client.WriteEntry{{Path: "b", Data: strings.NewReader("bravo")}, {Path: "c", Data: strings.NewReader("")}}, nil)
	if err != nil || len(infos) != 2 {
		t.Fatalf("WriteFiles: %+v, %v", infos, err)
	}
	if fake.files["b"] != "bravo" || fake.files["c"] != "" || fake.files["/a"] != "alpha" {
		t.Errorf("files %v", fake.files)
	}
	if fake.users[0] != "root" || fake.modes[0] != "0755" || fake.users[1] != "" || fake.modes[1] != "" {
		t.Errorf("users %q modes %q", fake.users, fake.modes)
	}
	b, err := sb.ReadFile(ctx, "/a", nil)
	if err != nil || string(b) != "alpha" {
		t.Fatalf("ReadFile: %q, %v", b, err)
	}
	rc, size, err := sb.OpenFileRange(ctx, "/a", 1, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(rc)
	rc.Close()
	if string(b) != "lph" || size != 3 {
		t.Errorf("range: %q size %d", b, size)
	}
	if _, err := sb.ReadFile(ctx, "/nope", nil); !client.IsNotFound(err) {
		t.Errorf("missing file: %v", err)
	}
	_, err = sb.WriteFile(ctx, "/full", strings.NewReader("x"), nil)
	var apiErr *client.APIError
	if !errors.Is(err, client.ErrNoSpace) || !errors.As(err, &apiErr) || apiErr.StatusCode != 507 {
		t.Errorf("full disk: %v", err)
	}
	if _, err := sb.WriteFile(ctx, "", nil, nil); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("empty path: %v", err)
	}
}
