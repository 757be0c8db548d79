package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

func readVolume(t *testing.T, ctx context.Context, f *client.VolumeFiles, p string) string {
	t.Helper()
	r, err := f.Read(ctx, p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeVolume(t *testing.T, ctx context.Context, f *client.VolumeFiles, p, s string) {
	t.Helper()
	if _, err := f.Write(ctx, p, strings.NewReader(s), int64(len(s)), client.VolumeOwner{}); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
}

// TestVolumeSurvivesRestart: a volume and its files outlive a server
// restart on the same data directory, and a sandbox that mounts it keeps
// running with its mount through the restart.
func TestVolumeSurvivesRestart(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	vol, err := c.CreateVolume(ctx, "keep", 64)
	if err != nil {
		t.Fatal(err)
	}
	writeVolume(t, ctx, c.Volume(vol), "/before.txt", "before")
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Volumes: map[string]string{"/vol": "keep"}})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, sb, "echo -n in-sandbox > /vol/sb.txt", nil)

	srv.Restart()
	c = srv.Client
	got, err := c.GetVolume(ctx, vol.ID)
	if err != nil {
		t.Fatalf("volume gone after restart: %v", err)
	}
	if got.Token != vol.Token || got.SizeMB != 64 {
		t.Fatalf("after restart: %+v, want token and size kept (%+v)", got, vol)
	}
	f := c.Volume(got)
	if s := readVolume(t, ctx, f, "/sb.txt"); s != "in-sandbox" {
		t.Fatalf("sb.txt = %q", s)
	}
	sb, err = c.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeVolume(t, ctx, f, "/after.txt", "after")
	if res := mustRun(t, ctx, sb, "cat /vol/before.txt /vol/after.txt", nil); res.Stdout != "beforeafter" {
		t.Fatalf("sandbox reads %q after the restart", res.Stdout)
	}
	if err := c.DestroyVolume(ctx, vol.ID); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("destroy while mounted: %v, want a conflict", err)
	}
	// A files-only pause stops the box; the resume boots a new one, which
	// mounts the volume again.
	if err := c.Pause(ctx, sb.ID, &client.PauseOptions{FilesOnly: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.DestroyVolume(ctx, vol.ID); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("destroy while a paused sandbox mounts it: %v, want a conflict", err)
	}
	writeVolume(t, ctx, f, "/paused.txt", "paused")
	if sb, err = c.Resume(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, sb, "cat /vol/paused.txt /vol/sb.txt", nil); res.Stdout != "pausedin-sandbox" {
		t.Fatalf("after a files-only pause the sandbox reads %q", res.Stdout)
	}
	if err := c.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}

	// A fresh sandbox after a second restart still finds the files: the
	// volume's disk is mounted again on first use.
	srv.Restart()
	c = srv.Client
	// Under /tmp, which runsc mounts from the rootfs itself.
	sb2, err := c.CreateSandbox(ctx, client.CreateOptions{Volumes: map[string]string{"/tmp/v": "keep"}})
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, sb2, "cat /tmp/v/sb.txt", nil); res.Stdout != "in-sandbox" {
		t.Fatalf("new sandbox reads %q", res.Stdout)
	}
	if err := c.KillSandbox(ctx, sb2.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DestroyVolume(ctx, vol.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetVolume(ctx, vol.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get after destroy: %v, want not found", err)
	}
}

// TestVolumeQuota: a volume of N MiB refuses writes past it, from a
// sandbox (ENOSPC) and through the content API (413), and stays usable.
func TestVolumeQuota(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	vol, err := c.CreateVolume(ctx, "small", 16)
	if err != nil {
		t.Fatal(err)
	}
	f := c.Volume(vol)
	sb, err := c.CreateSandbox(ctx, client.CreateOptions{Volumes: map[string]string{"/vol": "small"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := sb.Run(ctx, "dd if=/dev/zero of=/vol/fill bs=1M count=32 2>&1; echo rc=$?", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Stdout, "No space left on device") || strings.Contains(res.Stdout, "rc=0") {
		t.Fatalf("writing 32 MiB into a 16 MiB volume: %q, want ENOSPC", res.Stdout)
	}
	// Full: an upload fails with 413, with a known length and streamed.
	_, err = f.Write(ctx, "/more", bytes.NewReader(make([]byte, 4<<20)), 4<<20, client.VolumeOwner{})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload into a full volume: %v, want 413", err)
	}
	mustRun(t, ctx, sb, "rm /vol/fill", nil)
	// An upload larger than the whole volume is refused before it starts;
	// one of unknown length fails once the disk is full.
	_, err = f.Write(ctx, "/big", bytes.NewReader(make([]byte, 17<<20)), 17<<20, client.VolumeOwner{})
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload larger than the volume: %v, want 413", err)
	}
	_, err = f.Write(ctx, "/big", io.LimitReader(zeros{}, 20<<20), -1, client.VolumeOwner{})
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("streamed upload past the quota: %v, want 413", err)
	}
	if _, err := f.Stat(ctx, "/big"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a failed upload left a file: %v", err)
	}
	writeVolume(t, ctx, f, "/ok.txt", "still usable")
	if res := mustRun(t, ctx, sb, "cat /vol/ok.txt", nil); res.Stdout != "still usable" {
		t.Fatalf("read %q", res.Stdout)
	}
	if _, err := c.CreateVolume(ctx, "huge", 1<<30); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("a volume past the server's maximum: %v, want invalid argument", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestVolumeBadInput: every volume route answers bad input with a 4xx in
// the E2B error shape.
func TestVolumeBadInput(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 5*time.Minute)
	c := srv.Client
	vol, err := c.CreateVolume(ctx, "bad-input", 16)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := c.CreateVolume(ctx, "gone", 16)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DestroyVolume(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	api := func(method, path, body string) (int, wire.Error) {
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("X-API-Key", srv.APIKey)
		return send(t, req)
	}
	content := func(method, id, token, route string, q url.Values, body string) (int, wire.Error) {
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+"/volumecontent/"+id+"/"+route+"?"+q.Encode(), strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return send(t, req)
	}
	p := func(s string) url.Values { return url.Values{"path": {s}} }
	cases := []struct {
		name   string
		do     func() (int, wire.Error)
		status int
	}{
		{"create: malformed JSON", func() (int, wire.Error) { return api("POST", "/volumes", `{"name":`) }, 400},
		{"create: no body", func() (int, wire.Error) { return api("POST", "/volumes", ``) }, 400},
		{"create: bad name", func() (int, wire.Error) { return api("POST", "/volumes", `{"name":"a/b"}`) }, 400},
		{"create: empty name", func() (int, wire.Error) { return api("POST", "/volumes", `{"name":""}`) }, 400},
		{"create: traversal name", func() (int, wire.Error) { return api("POST", "/volumes", `{"name":".."}`) }, 400},
		{"create: duplicate", func() (int, wire.Error) { return api("POST", "/volumes", `{"name":"bad-input"}`) }, 409},
		{"create: tiny", func() (int, wire.Error) { return api("POST", "/volumes", `{"name":"t","sizeMB":1}`) }, 400},
		{"create: negative size", func() (int, wire.Error) { return api("POST", "/volumes", `{"name":"t","sizeMB":-5}`) }, 400},
		{"create: oversized body", func() (int, wire.Error) {
			return api("POST", "/volumes", `{"name":"`+strings.Repeat("a", 2<<20)+`"}`)
		}, 413},
		{"create: no key", func() (int, wire.Error) {
			req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/volumes", strings.NewReader(`{"name":"x"}`))
			return send(t, req)
		}, 401},
		{"get: unknown", func() (int, wire.Error) { return api("GET", "/volumes/nosuchvolume0000000a", "") }, 404},
		{"get: destroyed", func() (int, wire.Error) { return api("GET", "/volumes/"+gone.ID, "") }, 404},
		{"get: traversal id", func() (int, wire.Error) { return api("GET", "/volumes/..%2f..%2fetc", "") }, 404},
		{"delete: unknown", func() (int, wire.Error) { return api("DELETE", "/volumes/nosuchvolume0000000a", "") }, 404},
		{"content: no token", func() (int, wire.Error) { return content("GET", vol.ID, "", "path", p("/"), "") }, 401},
		{"content: wrong token", func() (int, wire.Error) { return content("GET", vol.ID, gone.Token, "path", p("/"), "") }, 401},
		{"content: API key as token", func() (int, wire.Error) { return content("GET", vol.ID, srv.APIKey, "path", p("/"), "") }, 401},
		{"content: destroyed volume", func() (int, wire.Error) { return content("GET", gone.ID, gone.Token, "path", p("/"), "") }, 404},
		{"content: no path", func() (int, wire.Error) { return content("GET", vol.ID, vol.Token, "path", nil, "") }, 400},
		{"content: traversal", func() (int, wire.Error) { return content("GET", vol.ID, vol.Token, "file", p("../../etc/passwd"), "") }, 400},
		{"content: traversal in write", func() (int, wire.Error) { return content("PUT", vol.ID, vol.Token, "file", p("/a/../../x"), "x") }, 400},
		{"content: traversal in mkdir", func() (int, wire.Error) { return content("POST", vol.ID, vol.Token, "dir", p("/../x"), "") }, 400},
		{"content: NUL", func() (int, wire.Error) { return content("GET", vol.ID, vol.Token, "path", p("/a\x00b"), "") }, 400},
		{"content: missing file", func() (int, wire.Error) { return content("GET", vol.ID, vol.Token, "file", p("/nope"), "") }, 404},
		{"content: read a directory", func() (int, wire.Error) { return content("GET", vol.ID, vol.Token, "file", p("/"), "") }, 400},
		{"content: list a missing dir", func() (int, wire.Error) { return content("GET", vol.ID, vol.Token, "dir", p("/nope"), "") }, 404},
		{"content: bad depth", func() (int, wire.Error) {
			return content("GET", vol.ID, vol.Token, "dir", url.Values{"path": {"/"}, "depth": {"-1"}}, "")
		}, 400},
		{"content: bad uid", func() (int, wire.Error) {
			return content("PUT", vol.ID, vol.Token, "file", url.Values{"path": {"/f"}, "uid": {"x"}}, "x")
		}, 400},
		{"content: uid out of range", func() (int, wire.Error) {
			return content("PUT", vol.ID, vol.Token, "file", url.Values{"path": {"/f"}, "uid": {"70000"}}, "x")
		}, 400},
		{"content: bad mode", func() (int, wire.Error) {
			return content("POST", vol.ID, vol.Token, "dir", url.Values{"path": {"/d"}, "mode": {"99999"}}, "")
		}, 400},
		{"content: remove the root", func() (int, wire.Error) { return content("DELETE", vol.ID, vol.Token, "path", p("/"), "") }, 400},
		{"content: remove missing", func() (int, wire.Error) { return content("DELETE", vol.ID, vol.Token, "path", p("/nope"), "") }, 404},
		{"content: patch malformed", func() (int, wire.Error) { return content("PATCH", vol.ID, vol.Token, "path", p("/"), `{"mode":`) }, 400},
		{"content: patch bad mode", func() (int, wire.Error) { return content("PATCH", vol.ID, vol.Token, "path", p("/"), `{"mode":70000}`) }, 400},
		{"content: write over the root", func() (int, wire.Error) { return content("PUT", vol.ID, vol.Token, "file", p("/"), "x") }, 400},
		{"mount: relative", func() (int, wire.Error) { return mountReq(api, "bad-input", "mnt") }, 400},
		{"mount: root", func() (int, wire.Error) { return mountReq(api, "bad-input", "/") }, 400},
		{"mount: /proc", func() (int, wire.Error) { return mountReq(api, "bad-input", "/proc") }, 400},
		{"mount: under /sys", func() (int, wire.Error) { return mountReq(api, "bad-input", "/sys/fs") }, 400},
		{"mount: /dev", func() (int, wire.Error) { return mountReq(api, "bad-input", "/dev") }, 400},
		{"mount: sbx's own", func() (int, wire.Error) { return mountReq(api, "bad-input", "/.sbx/run") }, 400},
		{"mount: traversal", func() (int, wire.Error) { return mountReq(api, "bad-input", "/mnt/../proc") }, 400},
		{"mount: unknown volume", func() (int, wire.Error) { return mountReq(api, "no-such-volume", "/mnt/x") }, 404},
		{"mount: bad volume name", func() (int, wire.Error) { return mountReq(api, "../x", "/mnt/x") }, 400},
		{"mount: duplicate path", func() (int, wire.Error) {
			return api("POST", "/v2/sandboxes", `{"templateID":"base","volumeMounts":[{"name":"bad-input","path":"/a"},{"name":"bad-input","path":"/a"}]}`)
		}, 400},
		{"mount: nested paths", func() (int, wire.Error) {
			return api("POST", "/v2/sandboxes", `{"templateID":"base","volumeMounts":[{"name":"bad-input","path":"/a"},{"name":"bad-input","path":"/a/b"}]}`)
		}, 400},
	}
	for _, tc := range cases {
		status, body := tc.do()
		if status != tc.status || body.Code != tc.status || body.Message == "" {
			t.Errorf("%s: %d %+v, want %d in the E2B error shape", tc.name, status, body, tc.status)
		}
	}
	if list, err := c.ListSandboxes(ctx, nil); err != nil || len(list) != 0 {
		t.Fatalf("bad creates left sandboxes: %v %v", list, err)
	}
}

func mountReq(api func(method, path, body string) (int, wire.Error), name, path string) (int, wire.Error) {
	b, _ := json.Marshal(wire.NewSandbox{TemplateID: "base", VolumeMounts: []wire.SandboxVolumeMount{{Name: name, Path: path}}})
	return api("POST", "/v2/sandboxes", string(b))
}

func send(t *testing.T, req *http.Request) (int, wire.Error) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e wire.Error
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Errorf("%s %s: %d with a body that is not an E2B error: %q", req.Method, req.URL.Path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, e
}
