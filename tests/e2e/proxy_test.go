package e2e

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// serverPy serves "/" with the request's Host and X-API-Key, and "/stream"
// as a response that sends one event, then waits for /tmp/release to exist
// before sending the last. It prints "ready" once bound.
const serverPy = `
import http.server, os, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            def chunk(s):
                b = s.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b)); self.wfile.flush()
            chunk("data: first\n\n")
            while not os.path.exists("/tmp/release"):
                time.sleep(0.01)
            chunk("data: last\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        body = ("host=%s path=%s apikey=%s auth=%s" % (self.headers.get("Host"), self.path, self.headers.get("X-API-Key"), self.headers.get("Authorization"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H)
print("ready", flush=True)
s.serve_forever()
`

// TestPortProxy reaches servers inside a sandbox, one bound only to the
// sandbox's loopback, through header routing and Host routing, and checks
// that responses stream without buffering and that the API key stays out.
func TestPortProxy(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 2*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, ctx, sb, "cat > /tmp/server.py <<'PYEOF'\n"+serverPy+"\nPYEOF", nil)
	for _, a := range []struct{ addr, port string }{{"127.0.0.1", "8080"}, {"0.0.0.0", "3000"}} {
		out := newWatcher()
		if _, err := sb.Start(ctx, client.ExecOptions{Cmd: "python3", Args: []string{"/tmp/server.py", a.addr, a.port}, Stdout: out}); err != nil {
			t.Fatal(err)
		}
		out.await(t, "ready")
	}
	get := func(t *testing.T, host string, headers map[string]string, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		if host != "" {
			req.Host = host
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	for _, tc := range []struct {
		name    string
		host    string
		headers map[string]string
		want    string
	}{
		{"header routing to a loopback-only port", "", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "8080"}, "path=/x"},
		{"header routing to a 0.0.0.0 port", "", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "3000"}, "path=/x"},
		{"host routing keeps the host", "8080-" + sb.ID + ".localhost:" + port, nil, "host=8080-" + sb.ID + ".localhost:" + port + " path=/x"},
		{"host routing to a 0.0.0.0 port", "3000-" + sb.ID + ".localhost:" + port, nil, "path=/x"},
		{"the API key is not forwarded", "", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "8080", "X-API-Key": srv.APIKey}, "apikey=None"},
		{"nor as a bearer token", "", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "8080", "Authorization": "Bearer " + srv.APIKey}, "auth=None"},
		{"basic credentials pass", "", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "8080", "Authorization": "Basic dXNlcjo="}, "auth=Basic dXNlcjo="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, tc.host, tc.headers, "/x")
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(body), tc.want) {
				t.Fatalf("status %d body %q, want %q", resp.StatusCode, body, tc.want)
			}
		})
	}
	t.Run("unknown sandbox by host", func(t *testing.T) {
		resp := get(t, "8080-nosuchsandbox00000000.localhost:"+port, nil, "/x")
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("streams without buffering", func(t *testing.T) {
		resp := get(t, "", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "3000"}, "/stream")
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != "data: first\n" {
			t.Fatalf("first event %q %v", line, err)
		}
		// The first event arrived while the server still waits for
		// /tmp/release: the proxy did not buffer. Release it.
		mustRun(t, ctx, sb, "touch /tmp/release", nil)
		rest, _ := io.ReadAll(br)
		if !strings.Contains(string(rest), "data: last") {
			t.Fatalf("rest %q", rest)
		}
	})
}
