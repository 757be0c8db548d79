package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// previewServer is tests/e2e/testdata/preview-server.js (see its comment).
func previewServer(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "tests", "e2e", "testdata", "preview-server.js"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startPreviewServers writes the preview server into sb and starts it on
// each of addrs ("HOST PORT MODE"), returning once every one is listening.
func startPreviewServers(t *testing.T, ctx context.Context, sb *client.Sandbox, addrs ...string) {
	t.Helper()
	if _, err := sb.WriteFile(ctx, "/tmp/preview-server.js", bytes.NewReader(previewServer(t)), nil); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		out := newWatcher()
		if _, err := sb.Start(ctx, client.ExecOptions{Cmd: "node", Args: append([]string{"/tmp/preview-server.js"}, strings.Fields(a)...), Stdout: out, Stderr: out}); err != nil {
			t.Fatal(err)
		}
		out.await(t, "ready")
	}
}

// route is how a test addresses a sandbox port through sbx.
type route struct {
	name string
	// set addresses req to port of sb.
	set func(req *http.Request, sb *client.Sandbox, port int)
}

var routes = []route{
	{"host", func(req *http.Request, sb *client.Sandbox, port int) { req.Host = sb.Host(port) }},
	{"headers", func(req *http.Request, sb *client.Sandbox, port int) {
		req.Header.Set("E2b-Sandbox-Id", sb.ID)
		req.Header.Set("E2b-Sandbox-Port", fmt.Sprint(port))
	}},
}

func newRequest(t *testing.T, ctx context.Context, method, url string, r route, sb *client.Sandbox, port int) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.set(req, sb, port)
	return req
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// h2cClient speaks HTTP/2 without TLS (prior knowledge) to the server.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// TestPreview reaches web servers inside a sandbox through sbx's port
// proxy, by Host and by headers: a server bound to the sandbox's loopback
// only and one on 0.0.0.0, over HTTP/1.1 and HTTP/2 (h2c) to sbx, HTTP/2 to
// a sandbox server that speaks it, server-sent events that must arrive one
// by one, and a WebSocket echo.
func TestPreview(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 3*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sb.TrafficAccessToken != "" {
		t.Fatalf("a public sandbox got a traffic token %q", sb.TrafficAccessToken)
	}
	_, port, _ := net.SplitHostPort(srv.Addr)
	if want := "localhost:" + port; sb.Domain != want {
		t.Fatalf("domain %q, want %q", sb.Domain, want)
	}
	if want := "3000-" + sb.ID + ".localhost:" + port; sb.Host(3000) != want {
		t.Fatalf("host %q, want %q", sb.Host(3000), want)
	}
	startPreviewServers(t, ctx, sb, "127.0.0.1 8080", "0.0.0.0 3000", "127.0.0.1 9090 h2c")

	for _, r := range routes {
		t.Run(r.name, func(t *testing.T) {
			for _, p := range []int{8080, 3000} {
				t.Run(fmt.Sprintf("HTTP/1.1 to port %d", p), func(t *testing.T) {
					resp, err := http.DefaultClient.Do(newRequest(t, ctx, "GET", srv.URL+"/hello?a=1", r, sb, p))
					if err != nil {
						t.Fatal(err)
					}
					body := readAll(t, resp)
					want := "proto=1.1 host=" + srv.Addr + " path=/hello?a=1"
					if r.name == "host" {
						want = "proto=1.1 host=" + sb.Host(p) + " path=/hello?a=1"
					}
					if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || !strings.HasPrefix(body, want) || !strings.Contains(body, "xfp=http") {
						t.Fatalf("%s %s %q, want %q", resp.Proto, resp.Status, body, want)
					}
				})
			}
			t.Run("a large download arrives whole", func(t *testing.T) {
				// 5 MiB and a few bytes: on runc the body is spliced
				// from the sandbox's socket to the client's.
				const n = 5<<20 + 3
				for i := 0; i < 2; i++ { // the second on a pooled connection
					resp, err := http.DefaultClient.Do(newRequest(t, ctx, "GET", srv.URL+fmt.Sprintf("/bytes?n=%d", n), r, sb, 3000))
					if err != nil {
						t.Fatal(err)
					}
					body := readAll(t, resp)
					if resp.StatusCode != 200 || len(body) != n || strings.Trim(body, "x") != "" || resp.ContentLength != n {
						t.Fatalf("%s: %d bytes (Content-Length %d), want %d x's", resp.Status, len(body), resp.ContentLength, n)
					}
				}
			})
			t.Run("HEAD", func(t *testing.T) {
				resp, err := http.DefaultClient.Do(newRequest(t, ctx, "HEAD", srv.URL+"/bytes?n=1000000", r, sb, 3000))
				if err != nil {
					t.Fatal(err)
				}
				if body := readAll(t, resp); resp.StatusCode != 200 || body != "" || resp.ContentLength != 1000000 {
					t.Fatalf("%s %q, Content-Length %d", resp.Status, body, resp.ContentLength)
				}
			})
			t.Run("h2c from the client, HTTP/1.1 to the sandbox server", func(t *testing.T) {
				resp, err := h2cClient().Do(newRequest(t, ctx, "GET", srv.URL+"/hello", r, sb, 8080))
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(t, resp)
				if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || !strings.HasPrefix(body, "proto=1.1 ") {
					t.Fatalf("%s %s %q", resp.Proto, resp.Status, body)
				}
			})
			t.Run("h2c end to end, with trailers", func(t *testing.T) {
				resp, err := h2cClient().Do(newRequest(t, ctx, "GET", srv.URL+"/grpc-like", r, sb, 9090))
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(t, resp)
				if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || !strings.HasPrefix(body, "proto=2.0 ") || !strings.Contains(body, "path=/grpc-like") {
					t.Fatalf("%s %s %q", resp.Proto, resp.Status, body)
				}
				if got := resp.Trailer.Get("X-Trailer"); got != "done" {
					t.Fatalf("trailer %q, want done (trailers %v)", got, resp.Trailer)
				}
			})
			t.Run("server-sent events arrive one by one", func(t *testing.T) {
				testSSE(t, ctx, srv.URL, sb, r, http.DefaultClient)
			})
			t.Run("server-sent events over h2c", func(t *testing.T) {
				testSSE(t, ctx, srv.URL, sb, r, h2cClient())
			})
			t.Run("websocket echo", func(t *testing.T) {
				testWebSocket(t, srv, sb, r)
			})
		})
	}

	t.Run("large downloads past the proxy's large buffers arrive whole", func(t *testing.T) {
		// On runc sbx copies a large body through one of its 16 large
		// buffers (internal/proxy/direct.go), and splices it when
		// all are in use. 16 downloads whose client has read one byte
		// hold every buffer (their bodies are far larger than the
		// sockets between hold); a 17th is spliced.
		const held, n = 16, 32<<20 + 5
		holder := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		defer holder.CloseIdleConnections()
		var bodies []io.ReadCloser
		defer func() {
			for _, b := range bodies {
				b.Close()
			}
		}()
		for i := 0; i < held; i++ {
			resp, err := holder.Do(newRequest(t, ctx, "GET", srv.URL+fmt.Sprintf("/bytes?n=%d", n), routes[i%2], sb, 3000))
			if err != nil {
				t.Fatal(err)
			}
			bodies = append(bodies, resp.Body)
			var one [1]byte
			if _, err := io.ReadFull(resp.Body, one[:]); err != nil || resp.StatusCode != 200 {
				t.Fatalf("held download %d: %s %v", i, resp.Status, err)
			}
		}
		resp, err := http.DefaultClient.Do(newRequest(t, ctx, "GET", srv.URL+fmt.Sprintf("/bytes?n=%d", n), routes[0], sb, 3000))
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || len(body) != n || strings.Trim(body, "x") != "" {
			t.Fatalf("the download past the buffers: %s, %d bytes, want %d x's", resp.Status, len(body), n)
		}
		if harness.Runtime() == "runc" && !strings.Contains(srv.Logs(), "every large buffer in use; splicing the body") {
			t.Fatal("the download past the buffers was not spliced (the server's log does not say so)")
		}
		for i, b := range bodies {
			rest, err := io.ReadAll(b)
			if err != nil || len(rest) != n-1 || strings.Trim(string(rest), "x") != "" {
				t.Fatalf("held download %d: %d more bytes (%v), want %d x's", i, len(rest), err, n-1)
			}
		}
	})

	t.Run("port closed in the sandbox", func(t *testing.T) {
		for _, r := range routes {
			resp, err := http.DefaultClient.Do(newRequest(t, ctx, "GET", srv.URL+"/", r, sb, 4444))
			if err != nil {
				t.Fatal(err)
			}
			wantE2BError(t, resp, http.StatusBadGateway, "nothing is listening on port 4444")
		}
	})
	t.Run("unknown sandbox", func(t *testing.T) {
		gone := &client.Sandbox{ID: "nosuchsandbox0000000", Domain: sb.Domain}
		for _, r := range routes {
			resp, err := http.DefaultClient.Do(newRequest(t, ctx, "GET", srv.URL+"/", r, gone, 3000))
			if err != nil {
				t.Fatal(err)
			}
			wantE2BError(t, resp, http.StatusBadGateway, "not found")
		}
	})
}

// wantE2BError checks that resp is an error in E2B's shape.
func wantE2BError(t *testing.T, resp *http.Response, status int, msg string) {
	t.Helper()
	body := readAll(t, resp)
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode != status || e.Code != status || !strings.Contains(e.Message, msg) {
		t.Fatalf("got %s %q, want %d with a message containing %q", resp.Status, body, status, msg)
	}
}

// testSSE opens an event stream on port 3000, at base through route r, and asks the server for one
// event at a time: each must arrive while the stream is still open and
// before the next is even sent, so nothing on the way may hold it back.
func testSSE(t *testing.T, ctx context.Context, base string, sb *client.Sandbox, r route, hc *http.Client) {
	resp, err := hc.Do(newRequest(t, ctx, "GET", base+"/sse", r, sb, 3000))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s %v", resp.Status, resp.Header)
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); line != "" {
				events <- line
			}
		}
	}()
	emit := func(path string) {
		t.Helper()
		resp, err := hc.Do(newRequest(t, ctx, "POST", base+path, r, sb, 3000))
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || body == "sent to 0" {
			t.Fatalf("%s: %s %q", path, resp.Status, body)
		}
	}
	for i := 1; i <= 3; i++ {
		emit(fmt.Sprintf("/emit?data=event-%d", i))
		select {
		case ev, ok := <-events:
			if want := fmt.Sprintf("data: event-%d", i); !ok || ev != want {
				t.Fatalf("event %d: %q (open %v), want %q", i, ev, ok, want)
			}
		case <-time.After(20 * time.Second): // a failure bound, not a wait
			t.Fatalf("event %d did not arrive while the stream was open: the proxy buffers", i)
		}
	}
	emit("/end")
	for ev := range events {
		t.Fatalf("unexpected event %q", ev)
	}
}

// testWebSocket upgrades a connection to the echo server on port 3000
// through sbx and exchanges messages of several sizes.
func testWebSocket(t *testing.T, srv *harness.Server, sb *client.Sandbox, r route) {
	conn, err := net.DialTimeout("tcp", srv.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	testWebSocketOn(t, conn, "http://"+srv.Addr, sb, r)
}

// testWebSocketOn does the same on conn, a connection to sbx, with
// requests for base.
func testWebSocketOn(t *testing.T, conn net.Conn, base string, sb *client.Sandbox, r route) {
	testWebSocketPort(t, conn, base, sb, r, 3000)
}

// testWebSocketPort does the same with the echo server on port.
func testWebSocketPort(t *testing.T, conn net.Conn, base string, sb *client.Sandbox, r route, port int) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	key := make([]byte, 16)
	rand.Read(key)
	k := base64.StdEncoding.EncodeToString(key)
	req, _ := http.NewRequest("GET", base+"/ws", nil)
	r.set(req, sb, port)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", k)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("upgrade: %s %v", resp.Status, resp.Header)
	}
	for _, n := range []int{5, 200, 70000} {
		msg := make([]byte, n)
		rand.Read(msg)
		op := byte(0x2)
		if n == 5 {
			msg, op = []byte("hello"), 0x1
		}
		if err := wsWrite(conn, op, msg); err != nil {
			t.Fatal(err)
		}
		gotOp, got, err := wsRead(br)
		if err != nil {
			t.Fatalf("read echo of %d bytes: %v", n, err)
		}
		if gotOp != op || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: opcode %d, %d bytes, equal %v", n, gotOp, len(got), bytes.Equal(got, msg))
		}
	}
	if err := wsWrite(conn, 0x8, []byte{0x03, 0xe8}); err != nil {
		t.Fatal(err)
	}
	if op, _, err := wsRead(br); err != nil || op != 0x8 {
		t.Fatalf("close: opcode %d %v", op, err)
	}
}

// wsWrite writes one masked (client) frame.
func wsWrite(w io.Writer, op byte, payload []byte) error {
	hdr := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n < 1<<16:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	mask := make([]byte, 4)
	rand.Read(mask)
	masked := make([]byte, len(payload))
	for i, b := range payload {
		masked[i] = b ^ mask[i&3]
	}
	_, err := w.Write(append(append(hdr, mask...), masked...))
	return err
}

// wsRead reads one unmasked (server) frame.
func wsRead(r io.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return h[0] & 0x0f, p, err
}

// TestPrivateTraffic checks a sandbox created with allowPublicTraffic false:
// its ports answer only requests carrying its traffic access token, while
// its agent keeps its own authentication.
func TestPrivateTraffic(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 2*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{PrivateTraffic: true})
	if err != nil {
		t.Fatal(err)
	}
	token := sb.TrafficAccessToken
	if len(token) < 32 {
		t.Fatalf("traffic access token %q", token)
	}
	// The agent's port needs no traffic token: commands and files work.
	startPreviewServers(t, ctx, sb, "127.0.0.1 8080")

	// The sandbox's details say its traffic is private.
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/sandboxes/"+sb.ID, nil)
	req.Header.Set("X-API-Key", srv.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Network struct {
			AllowPublicTraffic *bool `json:"allowPublicTraffic"`
		} `json:"network"`
	}
	if err := json.Unmarshal([]byte(readAll(t, resp)), &info); err != nil || info.Network.AllowPublicTraffic == nil || *info.Network.AllowPublicTraffic {
		t.Fatalf("details: network %+v %v", info.Network, err)
	}
	// Connecting again hands the token out again (the e2b SDKs read it).
	again, err := srv.Client.ConnectSandbox(ctx, sb.ID, nil)
	if err != nil || again.TrafficAccessToken != token {
		t.Fatalf("connect: token %q %v", again.TrafficAccessToken, err)
	}

	for _, r := range routes {
		t.Run(r.name, func(t *testing.T) {
			for _, tc := range []struct {
				name, token string
				msg         string
			}{
				{"no token", "", "private"},
				{"wrong token", strings.Repeat("0", len(token)), "invalid traffic access token"},
				{"a prefix of the token", token[:len(token)-1], "invalid traffic access token"},
				{"the API key instead", srv.APIKey, "invalid traffic access token"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					req := newRequest(t, ctx, "GET", srv.URL+"/hello", r, sb, 8080)
					if tc.token != "" {
						req.Header.Set(client.TrafficTokenHeader, tc.token)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					wantE2BError(t, resp, http.StatusForbidden, tc.msg)
				})
			}
			t.Run("the token", func(t *testing.T) {
				req := newRequest(t, ctx, "GET", srv.URL+"/hello", r, sb, 8080)
				req.Header.Set("e2b-traffic-access-token", token) // any case, as the SDK docs write it
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(t, resp)
				// The token authenticates to sbx; the app never sees it.
				if resp.StatusCode != 200 || !strings.Contains(body, "traffic=undefined") {
					t.Fatalf("%s %q", resp.Status, body)
				}
			})
			t.Run("websocket needs the token too", func(t *testing.T) {
				req := newRequest(t, ctx, "GET", srv.URL+"/ws", r, sb, 8080)
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				wantE2BError(t, resp, http.StatusForbidden, "private")
			})
		})
	}
	// A public sandbox beside it needs no token.
	pub, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	startPreviewServers(t, ctx, pub, "127.0.0.1 8080")
	resp, err = http.DefaultClient.Do(newRequest(t, ctx, "GET", srv.URL+"/hello", routes[0], pub, 8080))
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("public sandbox: %s %q", resp.Status, body)
	}
	// Another private sandbox's token does not open this one.
	other, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{PrivateTraffic: true})
	if err != nil {
		t.Fatal(err)
	}
	if other.TrafficAccessToken == "" || other.TrafficAccessToken == token {
		t.Fatalf("second private sandbox's token %q", other.TrafficAccessToken)
	}
	req = newRequest(t, ctx, "GET", srv.URL+"/hello", routes[0], sb, 8080)
	req.Header.Set(client.TrafficTokenHeader, other.TrafficAccessToken)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	wantE2BError(t, resp, http.StatusForbidden, "invalid traffic access token")
}
