package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestFiles moves files through /files with the SDK and `sbx cp`, and tries
// to leave the sandbox through it.
func TestFiles(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 10*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("RoundTrip200MiB", func(t *testing.T) { testFilesRoundTrip(t, ctx, sb) })
	t.Run("Traversal", func(t *testing.T) { testFilesTraversal(t, ctx, srv, sb) })
	t.Run("BadRequests", func(t *testing.T) { testFilesBadRequests(t, ctx, srv, sb) })
	t.Run("CopyTree", func(t *testing.T) { testFilesCopyTree(t, ctx, srv, sb) })
}

func testFilesRoundTrip(t *testing.T, ctx context.Context, sb *client.Sandbox) {
	const size = 200 << 20
	src := io.LimitReader(mrand.NewChaCha8([32]byte{1, 2, 3}), size)
	up := sha256.New()
	start := time.Now()
	info, err := sb.WriteFile(ctx, "big.bin", io.TeeReader(src, up), nil)
	if err != nil {
		t.Fatal(err)
	}
	upTime := time.Since(start)
	if info.Path != "/home/user/big.bin" {
		t.Errorf("written to %q", info.Path)
	}
	start = time.Now()
	rc, n, err := sb.OpenFile(ctx, "/home/user/big.bin", nil)
	if err != nil {
		t.Fatal(err)
	}
	down := sha256.New()
	got, err := io.Copy(down, rc)
	rc.Close()
	downTime := time.Since(start)
	if err != nil || got != size || n != size {
		t.Fatalf("read %d bytes (Content-Length %d), err %v; want %d", got, n, err, size)
	}
	if !bytes.Equal(up.Sum(nil), down.Sum(nil)) {
		t.Fatal("SHA-256 of the file read back differs from what was written")
	}
	mib := float64(size) / (1 << 20)
	t.Logf("200 MiB through the server's proxy: upload %.2fs (%.0f MiB/s), download %.2fs (%.0f MiB/s)",
		upTime.Seconds(), mib/upTime.Seconds(), downTime.Seconds(), mib/downTime.Seconds())

	// Owned by the default user, and a range of it.
	res := mustRun(t, ctx, sb, "stat -c '%U:%G' big.bin && sha256sum big.bin && rm big.bin", nil)
	if !strings.HasPrefix(res.Stdout, "user:user\n") || !strings.Contains(res.Stdout, hex.EncodeToString(up.Sum(nil))) {
		t.Errorf("in the sandbox: %q", res.Stdout)
	}
}

// testFilesTraversal: every path /files is given resolves inside the
// sandbox, with the user's rights; the host's files are never read or
// written.
func testFilesTraversal(t *testing.T, ctx context.Context, srv *harness.Server, sb *client.Sandbox) {
	hostDir := t.TempDir()
	secret := filepath.Join(hostDir, "secret")
	token := make([]byte, 16)
	rand.Read(token)
	if err := os.WriteFile(secret, []byte(hex.EncodeToString(token)), 0o644); err != nil {
		t.Fatal(err)
	}
	hostShadow, _ := os.ReadFile("/etc/shadow")
	mustRun(t, ctx, sb, "ln -s / ~/rootlink && ln -s /proc/1/root ~/p1root && ln -s /proc/self/root ~/selfroot", nil)
	root := &client.FileOptions{User: "root"}

	rel := strings.Repeat("../", 8)
	for _, p := range []string{
		rel + strings.TrimPrefix(secret, "/"),
		secret,
		"rootlink" + secret,
		"p1root" + secret,
		"selfroot" + secret,
	} {
		for _, opts := range []*client.FileOptions{nil, root} {
			b, err := sb.ReadFile(ctx, p, opts)
			if err == nil || strings.Contains(string(b), hex.EncodeToString(token)) {
				t.Errorf("read %s (as %v): %q, %v; want an error", p, opts, b, err)
			}
		}
	}
	for _, p := range []string{"/etc/shadow", "rootlink/etc/shadow", "p1root/etc/shadow", rel + "etc/shadow"} {
		b, err := sb.ReadFile(ctx, p, root)
		if err == nil && len(hostShadow) > 0 && bytes.Equal(b, hostShadow) {
			t.Errorf("read %s as root: the host's /etc/shadow", p)
		}
		// The default user may not read the sandbox's own shadow either.
		if _, err := sb.ReadFile(ctx, p, nil); !errors.Is(err, client.ErrPermissionDenied) {
			t.Errorf("read %s as user: %v, want permission denied", p, err)
		}
	}
	// Writes through the same routes land in the sandbox, never on the
	// host; the default user cannot write into /etc at all.
	for i, p := range []string{rel + strings.TrimPrefix(hostDir, "/") + "/pwned", "rootlink" + hostDir + "/pwned", "p1root" + hostDir + "/pwned"} {
		if _, err := sb.WriteFile(ctx, p, strings.NewReader("pwned"), &client.WriteOptions{User: "root"}); err != nil {
			t.Errorf("write %s as root (inside the sandbox): %v", p, err)
		}
		if _, err := os.Stat(filepath.Join(hostDir, "pwned")); !os.IsNotExist(err) {
			t.Fatalf("write %d reached the host: %v", i, err)
		}
	}
	if b, _ := os.ReadFile(secret); string(b) != hex.EncodeToString(token) {
		t.Fatal("the host file changed")
	}
	for _, p := range []string{rel + "etc/passwd", "/etc/sbx-pwned", "rootlink/etc/sbx-pwned", "p1root/etc/sbx-pwned"} {
		if _, err := sb.WriteFile(ctx, p, strings.NewReader("x"), nil); err == nil {
			t.Errorf("user wrote %s", p)
		}
	}
	if res := mustRun(t, ctx, sb, "ls /etc/sbx-pwned 2>&1; grep -c '^root:' /etc/passwd", nil); !strings.Contains(res.Stdout, "No such file") || !strings.HasSuffix(res.Stdout, "1\n") {
		t.Errorf("/etc changed: %q", res.Stdout)
	}
}

// filesRequest sends a raw /files request through the server's proxy.
func filesRequest(t *testing.T, ctx context.Context, srv *harness.Server, sb *client.Sandbox, method string, q url.Values, ct string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+"/files?"+q.Encode(), body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("E2b-Sandbox-Id", sb.ID)
	req.Header.Set("E2b-Sandbox-Port", "49983")
	req.Header.Set("X-Access-Token", sb.EnvdAccessToken)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func testFilesBadRequests(t *testing.T, ctx context.Context, srv *harness.Server, sb *client.Sandbox) {
	tests := []struct {
		name, method string
		q            url.Values
		ct, body     string
		status       int
	}{
		{"read a directory", "GET", url.Values{"path": {"/home/user"}}, "", "", 400},
		{"write a directory", "POST", url.Values{"path": {"/tmp"}}, "application/octet-stream", "x", 400},
		{"parent is a file", "POST", url.Values{"path": {"/etc/hostname/x"}, "username": {"root"}}, "application/octet-stream", "x", 400},
		{"malformed multipart", "POST", nil, "multipart/form-data; boundary=XYZ", "--nope\r\n\r\ngarbage", 400},
		{"missing file", "GET", url.Values{"path": {"/no/such/file"}}, "", "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := filesRequest(t, ctx, srv, sb, tt.method, tt.q, tt.ct, strings.NewReader(tt.body))
			if code != tt.status || !strings.Contains(body, `"code":`) || !strings.Contains(body, `"message":`) {
				t.Errorf("%d %s, want %d with a JSON error", code, body, tt.status)
			}
		})
	}
	// A range.
	if _, err := sb.WriteFile(ctx, "/tmp/digits", strings.NewReader("0123456789"), nil); err != nil {
		t.Fatal(err)
	}
	rc, n, err := sb.OpenFileRange(ctx, "/tmp/digits", 3, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "3456" || n != 4 {
		t.Errorf("range: %q (%d)", b, n)
	}
}

// testFilesCopyTree copies a directory tree into the sandbox and back with
// `sbx cp` and compares contents and modes.
func testFilesCopyTree(t *testing.T, ctx context.Context, srv *harness.Server, sb *client.Sandbox) {
	src := t.TempDir()
	files := map[string]string{
		"a.txt":           "alpha\n",
		"sub/b.sh":        "#!/bin/sh\necho b\n",
		"sub/deep/c.bin":  string(bytes.Repeat([]byte{0, 1, 2, 255}, 1000)),
		"sp ace/d e.txt":  "spaces",
		"big/nine-mib.bn": strings.Repeat("x", 9<<20),
	}
	for p, data := range files {
		full := filepath.Join(src, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode)
	}
	os.Mkdir(filepath.Join(src, "empty"), 0o700)

	out, errOut, code := srv.CLI(ctx, nil, "cp", src, sb.ID+":/home/user/tree")
	if code != 0 {
		t.Fatalf("sbx cp up: %d %s %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "MiB/s") {
		t.Errorf("no progress line for the 9 MiB file: %q", errOut)
	}
	res := mustRun(t, ctx, sb, "cd ~/tree && find . -type f -exec sha256sum {} + | sort && stat -c '%a %U %n' sub/b.sh a.txt empty", nil)
	for p, data := range files {
		sum := sha256.Sum256([]byte(data))
		if !strings.Contains(res.Stdout, hex.EncodeToString(sum[:])+"  ./"+p) {
			t.Errorf("%s missing or different in the sandbox:\n%s", p, res.Stdout)
		}
	}
	// Directory modes are not kept on upload: the protocol has no chmod.
	for _, want := range []string{"755 user sub/b.sh", "644 user a.txt", " user empty"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("want %q in:\n%s", want, res.Stdout)
		}
	}

	dst := filepath.Join(t.TempDir(), "back")
	out, errOut, code = srv.CLI(ctx, nil, "cp", sb.ID+":tree", dst)
	if code != 0 {
		t.Fatalf("sbx cp down: %d %s %s", code, out, errOut)
	}
	for p, data := range files {
		b, err := os.ReadFile(filepath.Join(dst, p))
		if err != nil || string(b) != data {
			t.Errorf("%s after the round trip: %d bytes, %v", p, len(b), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "sub/b.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode of sub/b.sh: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "empty")); err != nil || !fi.IsDir() {
		t.Errorf("empty directory: %v", err)
	}

	// ls and cat.
	out, _, code = srv.CLI(ctx, nil, "ls", sb.ID, "tree/sub")
	if code != 0 || !strings.Contains(out, "-rwxr-xr-x") || !strings.Contains(out, "b.sh") || !strings.Contains(out, "deep") {
		t.Errorf("sbx ls: %d %q", code, out)
	}
	out, _, code = srv.CLI(ctx, nil, "cat", sb.ID, "tree/a.txt")
	if code != 0 || out != "alpha\n" {
		t.Errorf("sbx cat: %d %q", code, out)
	}
}
