package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestEscapePortsOwnSandbox: traffic for a sandbox's port reaches that
// sandbox's loopback and no other: two sandboxes serve the same loopback
// port, each request lands in the sandbox it names (on runc the proxy
// enters the box's network namespace, found from its init's pidfd), and
// once one is killed its port answers nothing, not the other's server.
func TestEscapePortsOwnSandbox(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	var sbs []*client.Sandbox
	for range 2 {
		sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Kill(context.Background()) })
		mustRun(t, ctx, sb, "mkdir -p /tmp/www && printf %s "+sb.ID+" > /tmp/www/id", nil)
		out := newWatcher()
		if _, err := sb.Start(ctx, client.ExecOptions{Cmd: "python3", Args: []string{"-u", "-c",
			"import http.server, functools\n" +
				"h = functools.partial(http.server.SimpleHTTPRequestHandler, directory='/tmp/www')\n" +
				"s = http.server.HTTPServer(('127.0.0.1', 8123), h)\nprint('ready')\ns.serve_forever()"}, Stdout: out}); err != nil {
			t.Fatal(err)
		}
		out.await(t, "ready")
		sbs = append(sbs, sb)
	}
	get := func(id string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/id", nil)
		req.Header.Set("E2b-Sandbox-Id", id)
		req.Header.Set("E2b-Sandbox-Port", "8123")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for range 2 {
		for _, sb := range sbs {
			if code, body := get(sb.ID); code != 200 || body != sb.ID {
				t.Fatalf("port 8123 of %s answered %d %q", sb.ID, code, body)
			}
		}
	}
	if err := sbs[0].Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(sbs[0].ID); code == 200 || strings.Contains(body, sbs[1].ID) {
		t.Fatalf("the killed sandbox's port answered %d %q", code, body)
	}
	if code, body := get(sbs[1].ID); code != 200 || body != sbs[1].ID {
		t.Fatalf("port 8123 of %s after the other's kill: %d %q", sbs[1].ID, code, body)
	}
}
