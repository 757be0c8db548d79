package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
	"github.com/sbxdev/sbx/wire"
)

// dashSession is a signed-in dashboard session of a test.
type dashSession struct {
	srv    *harness.Server
	cookie *http.Cookie
	wire.DashboardSession
}

// dashSignIn signs in to srv's dashboard with key.
func dashSignIn(t *testing.T, ctx context.Context, srv *harness.Server, key string) *dashSession {
	t.Helper()
	body, _ := json.Marshal(wire.DashboardSignIn{APIKey: key})
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/dashboard/api/session", bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("sign in: %d %s", resp.StatusCode, b)
	}
	s := &dashSession{srv: srv}
	if err := json.Unmarshal(b, &s.DashboardSession); err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "sbx_session" {
			s.cookie = c
		}
	}
	if s.cookie == nil {
		t.Fatalf("sign in set no sbx_session cookie: %v", resp.Header["Set-Cookie"])
	}
	return s
}

// do sends a request with the session's cookie (and its CSRF token when
// csrf) and returns the response with its body read.
func (s *dashSession) do(t *testing.T, ctx context.Context, method, path string, body io.Reader, csrf bool) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, s.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(s.cookie)
	if csrf {
		req.Header.Set("X-CSRF-Token", s.CSRFToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// terminal opens a terminal WebSocket as a same-origin page would.
func (s *dashSession) terminal(ctx context.Context, sandboxID, query string) (*websocket.Conn, *http.Response, error) {
	u := strings.Replace(s.srv.URL, "http", "ws", 1) + "/dashboard/api/sandboxes/" + sandboxID + "/terminal?" + query
	h := http.Header{}
	h.Set("Origin", s.srv.URL)
	h.Set("Cookie", s.cookie.Name+"="+s.cookie.Value)
	return websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
}

// termReader collects a terminal's output.
type termReader struct {
	t    *testing.T
	conn *websocket.Conn
	out  bytes.Buffer
	exit *int
}

// session reads the first control frame, which names the session.
func (r *termReader) session(ctx context.Context) string {
	r.t.Helper()
	typ, b, err := r.conn.Read(ctx)
	var c struct{ Type, ID string }
	if err != nil || typ != websocket.MessageText || json.Unmarshal(b, &c) != nil || c.Type != "session" || c.ID == "" {
		r.t.Fatalf("first frame: %v %q %v; want {\"type\":\"session\",\"id\":…}", typ, b, err)
	}
	return c.ID
}

// until reads until the output since the last mark contains want.
func (r *termReader) until(ctx context.Context, want string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !strings.Contains(r.out.String(), want) {
		typ, b, err := r.conn.Read(ctx)
		if err != nil {
			r.t.Fatalf("waiting for %q: %v; output so far %q", want, err, r.out.String())
		}
		if typ == websocket.MessageBinary {
			r.out.Write(b)
		}
	}
}

func (r *termReader) mark() { r.out.Reset() }

func (r *termReader) send(ctx context.Context, keys string) {
	r.t.Helper()
	if err := r.conn.Write(ctx, websocket.MessageBinary, []byte(keys)); err != nil {
		r.t.Fatal(err)
	}
}

// TestDashboard drives the dashboard's server side as its page does: sign
// in, the cookie on the API with CSRF, the live sandbox list, a terminal,
// files, processes, and sign-out closing what the session had open.
func TestDashboard(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 5*time.Minute)
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("Session", func(t *testing.T) { testDashSession(t, ctx, srv) })
	t.Run("Stream", func(t *testing.T) { testDashStream(t, ctx, srv) })
	t.Run("Terminal", func(t *testing.T) { testDashTerminal(t, ctx, srv, sb) })
	t.Run("Files", func(t *testing.T) { testDashFiles(t, ctx, srv, sb) })
	t.Run("Revoked", func(t *testing.T) { testDashRevoked(t, ctx, srv, sb) })
}

func testDashSession(t *testing.T, ctx context.Context, srv *harness.Server) {
	code, body := teamSend(t, ctx, "POST", srv.URL+"/dashboard/api/session", "", []byte(`{"apiKey":"`+harness.NewAPIKey()+`"}`))
	if code != 401 || !strings.Contains(string(body), `"message":"invalid API key"`) {
		t.Errorf("wrong key: %d %s; want 401 invalid API key", code, body)
	}
	s := dashSignIn(t, ctx, srv, srv.APIKey)
	if c := s.cookie; !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 43200 || c.Path != "/" {
		t.Errorf("cookie %+v; want HttpOnly, SameSite=Strict, Max-Age=43200, Path=/", c)
	}
	if s.Role != "admin" || !s.ServerAdmin || s.CSRFToken == "" {
		t.Errorf("session %+v", s.DashboardSession)
	}
	resp, b := s.do(t, ctx, "GET", "/dashboard/api/session", nil, false)
	if resp.StatusCode != 200 || !strings.Contains(string(b), s.KeyID) {
		t.Errorf("GET session: %d %s", resp.StatusCode, b)
	}
	// CSP on every dashboard response, with a fresh nonce.
	csps := map[string]bool{}
	for range 2 {
		resp, _ := s.do(t, ctx, "GET", "/dashboard/api/session", nil, false)
		c := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(c, "script-src 'self';") || !strings.Contains(c, "'nonce-") || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("headers %v", resp.Header)
		}
		csps[c] = true
	}
	if len(csps) != 2 {
		t.Errorf("the same CSP nonce twice: %v", csps)
	}
	resp, b = s.do(t, ctx, "GET", "/dashboard/", nil, false)
	if resp.StatusCode == 503 {
		if !strings.Contains(string(b), "run scripts/build-dashboard.sh") {
			t.Errorf("GET /dashboard/ without assets: %s", b)
		}
	} else if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" || strings.Contains(string(b), "__CSP_NONCE__") {
		t.Errorf("GET /dashboard/: %d %v", resp.StatusCode, resp.Header)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noRedirect.Get(srv.URL + "/dashboard"); err != nil || resp.StatusCode != 301 || resp.Header.Get("Location") != "/dashboard/" {
		t.Errorf("GET /dashboard: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The cookie is the key on the E2B routes; state changes need CSRF.
	resp, b = s.do(t, ctx, "GET", "/v2/sandboxes", nil, false)
	if resp.StatusCode != 200 {
		t.Errorf("GET /v2/sandboxes with the cookie: %d %s", resp.StatusCode, b)
	}
	const create = `{"templateID":"base","timeout":60}`
	resp, b = s.do(t, ctx, "POST", "/sandboxes", strings.NewReader(create), false)
	if resp.StatusCode != 403 || !strings.Contains(string(b), "missing or invalid CSRF token") {
		t.Errorf("POST /sandboxes by cookie without CSRF: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/sandboxes", strings.NewReader(create))
	req.AddCookie(s.cookie)
	req.Header.Set("X-CSRF-Token", "wrong")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Errorf("POST /sandboxes with a wrong CSRF token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	resp, b = s.do(t, ctx, "POST", "/sandboxes", strings.NewReader(create), true)
	var made wire.Sandbox
	if resp.StatusCode != 201 || json.Unmarshal(b, &made) != nil {
		t.Fatalf("POST /sandboxes by cookie with CSRF: %d %s", resp.StatusCode, b)
	}
	if resp, b := s.do(t, ctx, "DELETE", "/sandboxes/"+made.SandboxID, nil, true); resp.StatusCode != 204 {
		t.Errorf("kill by cookie: %d %s", resp.StatusCode, b)
	}
}

// sseReader reads server-sent events.
type sseReader struct {
	br   *bufio.Reader
	body io.Closer
}

func (r *sseReader) next() (event string, data []byte, err error) {
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data, nil
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = []byte(line[6:])
		}
	}
}

func openStream(t *testing.T, ctx context.Context, s *dashSession) *sseReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.srv.URL+"/dashboard/api/sandboxes/stream", nil)
	req.AddCookie(s.cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sseReader{br: bufio.NewReader(resp.Body), body: resp.Body}
}

func testDashStream(t *testing.T, ctx context.Context, srv *harness.Server) {
	s := dashSignIn(t, ctx, srv, srv.APIKey)
	st := openStream(t, ctx, s)
	ev, data, err := st.next()
	var snap []wire.ListedSandbox
	if err != nil || ev != "snapshot" || json.Unmarshal(data, &snap) != nil || len(snap) == 0 {
		t.Fatalf("first event %q %s %v; want a snapshot with the test's sandbox", ev, data, err)
	}
	sb, err := srv.Client.CreateSandbox(ctx, client.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, data, err := st.next()
		if err != nil {
			t.Fatalf("waiting for the upsert of %s: %v", sb.ID, err)
		}
		var ls wire.ListedSandbox
		if ev == "upsert" && json.Unmarshal(data, &ls) == nil && ls.SandboxID == sb.ID && ls.State == "running" {
			break
		}
	}
	if err := sb.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		ev, data, err := st.next()
		if err != nil {
			t.Fatalf("waiting for the remove of %s: %v", sb.ID, err)
		}
		var rm wire.DashboardRemoved
		if ev == "remove" && json.Unmarshal(data, &rm) == nil && rm.SandboxID == sb.ID {
			break
		}
	}
}

func testDashTerminal(t *testing.T, ctx context.Context, srv *harness.Server, sb *client.Sandbox) {
	s := dashSignIn(t, ctx, srv, srv.APIKey)
	conn, _, err := s.terminal(ctx, sb.ID, "cols=80&rows=24")
	if err != nil {
		t.Fatal(err)
	}
	r := &termReader{t: t, conn: conn}
	sid := r.session(ctx)
	r.send(ctx, "echo hi\r")
	// The line typed is echoed ("echo hi\r\n"), then its output: "hi"
	// at the start of a line (after bash's bracketed-paste reset).
	r.until(ctx, "\rhi\r\n")

	// Resize.
	r.mark()
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"resize","cols":123,"rows":45}`)); err != nil {
		t.Fatal(err)
	}
	r.send(ctx, "stty size\r")
	r.until(ctx, "45 123\r\n")

	// The shell appears among the processes.
	resp, b := s.do(t, ctx, "GET", "/dashboard/api/sandboxes/"+sb.ID+"/processes", nil, false)
	var procs []wire.DashboardProcess
	if resp.StatusCode != 200 || json.Unmarshal(b, &procs) != nil || !strings.Contains(string(b), `"tag":"dashboard-terminal-`+sid+`"`) {
		t.Errorf("processes: %d %s; want the terminal's shell", resp.StatusCode, b)
	}

	// A drop keeps the shell: a variable set before it is still set.
	r.send(ctx, "DASHVAR=kept; echo set-$DASHVAR\r")
	r.until(ctx, "set-kept\r\n")
	conn.Close(websocket.StatusNormalClosure, "drop")
	conn2, _, err := s.terminal(ctx, sb.ID, "cols=80&rows=24&session="+sid)
	if err != nil {
		t.Fatal(err)
	}
	r2 := &termReader{t: t, conn: conn2}
	if got := r2.session(ctx); got != sid {
		t.Fatalf("re-attached to session %q, want %q", got, sid)
	}
	r2.until(ctx, "set-kept") // the replay
	r2.mark()
	r2.send(ctx, "echo again-${DASHVAR}42\r")
	r2.until(ctx, "again-kept42\r\n")
	r2.send(ctx, "exit 3\r")
	for {
		typ, b, err := conn2.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for the exit frame: %v", err)
		}
		if typ == websocket.MessageText {
			if string(b) != `{"type":"exit","code":3}` {
				t.Errorf("exit frame %s", b)
			}
			break
		}
	}
	if _, _, err := conn2.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("after the exit: %v; want a normal close", err)
	}
	// The ended session is gone.
	if _, resp, err := s.terminal(ctx, sb.ID, "session="+sid); err == nil || resp == nil || resp.StatusCode != 404 {
		t.Errorf("re-attach to an ended shell: %v %v; want 404", resp, err)
	}

	// Refusals.
	u := strings.Replace(srv.URL, "http", "ws", 1) + "/dashboard/api/sandboxes/" + sb.ID + "/terminal"
	for name, origin := range map[string]string{"cross-origin": "http://evil.example", "no origin": ""} {
		h := http.Header{"Cookie": {s.cookie.Name + "=" + s.cookie.Value}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		if c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h}); err == nil || resp == nil || resp.StatusCode != 403 {
			if c != nil {
				c.CloseNow()
			}
			t.Errorf("%s: %v %v; want 403", name, resp, err)
		}
	}
	for q, want := range map[string]int{"cols=0": 400, "rows=abc": 400, "session=nope": 404} {
		if _, resp, err := s.terminal(ctx, sb.ID, q); err == nil || resp == nil || resp.StatusCode != want {
			t.Errorf("terminal?%s: %v %v; want %d", q, resp, err, want)
		}
	}
	if _, resp, err := s.terminal(ctx, "nosuchsandbox", ""); err == nil || resp == nil || resp.StatusCode != 404 {
		t.Errorf("unknown sandbox: %v %v; want 404", resp, err)
	}
}

func testDashFiles(t *testing.T, ctx context.Context, srv *harness.Server, sb *client.Sandbox) {
	s := dashSignIn(t, ctx, srv, srv.APIKey)
	base := "/dashboard/api/sandboxes/" + sb.ID
	q := func(p string) string { return "?path=" + url.QueryEscape(p) }
	name := `<img src=x onerror=alert(1)>.txt`
	content := "hello from the dashboard\n"

	if resp, b := s.do(t, ctx, "POST", base+"/files/dir"+q("dash/sub"), nil, true); resp.StatusCode != 204 {
		t.Fatalf("mkdir: %d %s", resp.StatusCode, b)
	}
	if resp, b := s.do(t, ctx, "PUT", base+"/files/content"+q("dash/sub/"+name), strings.NewReader(content), false); resp.StatusCode != 403 {
		t.Errorf("upload without CSRF: %d %s; want 403", resp.StatusCode, b)
	}
	if resp, b := s.do(t, ctx, "PUT", base+"/files/content"+q("dash/sub/"+name), strings.NewReader(content), true); resp.StatusCode != 204 {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	resp, b := s.do(t, ctx, "GET", base+"/files"+q("dash/sub"), nil, false)
	var files []wire.DashboardFile
	if resp.StatusCode != 200 || json.Unmarshal(b, &files) != nil || len(files) != 1 {
		t.Fatalf("list: %d %s", resp.StatusCode, b)
	}
	if f := files[0]; f.Name != name || f.Type != "file" || f.Size != int64(len(content)) || f.Path != "/home/user/dash/sub/"+name || f.Mode != "0644" || f.ModifiedTime.IsZero() {
		t.Errorf("listed %+v", f)
	}
	resp, b = s.do(t, ctx, "GET", base+"/files"+q(""), nil, false)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"name":"dash","path":"/home/user/dash","type":"dir"`) {
		t.Errorf("list of the home: %d %s", resp.StatusCode, b)
	}
	resp, b = s.do(t, ctx, "GET", base+"/files/content"+q("/home/user/dash/sub/"+name)+"&download=1", nil, false)
	if resp.StatusCode != 200 || string(b) != content || resp.Header.Get("Content-Type") != "application/octet-stream" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Disposition") != "attachment; filename*=UTF-8''"+url.PathEscape(name) {
		t.Errorf("download: %d %q %v", resp.StatusCode, b, resp.Header)
	}
	for what, c := range map[string]struct {
		method, path string
		want         int
	}{
		"missing file":          {"GET", base + "/files/content" + q("dash/nope"), 404},
		"missing dir":           {"GET", base + "/files" + q("/nope"), 404},
		"traversal":             {"GET", base + "/files/content" + q("../../etc/passwd"), 400},
		"traversal in list":     {"GET", base + "/files" + q("/home/user/../.."), 400},
		"no path":               {"GET", base + "/files/content", 400},
		"unknown sandbox":       {"GET", "/dashboard/api/sandboxes/nosuchsandbox/files" + q("/"), 404},
		"unknown sandbox write": {"PUT", "/dashboard/api/sandboxes/nosuchsandbox/files/content" + q("x"), 404},
		"delete without path":   {"DELETE", base + "/files", 400},
	} {
		if resp, b := s.do(t, ctx, c.method, c.path, nil, true); resp.StatusCode != c.want || !strings.Contains(string(b), fmt.Sprintf(`"code":%d`, c.want)) {
			t.Errorf("%s: %d %s; want %d in the E2B shape", what, resp.StatusCode, b, c.want)
		}
	}
	// Too large: refused by its length, before any of it is read.
	req, _ := http.NewRequestWithContext(ctx, "PUT", srv.URL+base+"/files/content"+q("big"), io.LimitReader(zeros{}, 101<<20))
	req.ContentLength = 101 << 20
	req.AddCookie(s.cookie)
	req.Header.Set("X-CSRF-Token", s.CSRFToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 413 {
		t.Errorf("101 MiB upload: %v %v; want 413", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, b := s.do(t, ctx, "DELETE", base+"/files"+q("dash"), nil, true); resp.StatusCode != 204 {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
	if resp, _ := s.do(t, ctx, "GET", base+"/files"+q("dash"), nil, false); resp.StatusCode != 404 {
		t.Errorf("list after delete: %d; want 404", resp.StatusCode)
	}
}

// testDashRevoked: signing out refuses the cookie and closes the stream
// and the terminal it had open; deleting the key ends its sessions.
func testDashRevoked(t *testing.T, ctx context.Context, srv *harness.Server, sb *client.Sandbox) {
	s := dashSignIn(t, ctx, srv, srv.APIKey)
	st := openStream(t, ctx, s)
	if ev, _, err := st.next(); err != nil || ev != "snapshot" {
		t.Fatalf("first event %q %v", ev, err)
	}
	conn, _, err := s.terminal(ctx, sb.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	(&termReader{t: t, conn: conn}).session(ctx)
	if resp, b := s.do(t, ctx, "DELETE", "/dashboard/api/session", nil, true); resp.StatusCode != 204 {
		t.Fatalf("sign out: %d %s", resp.StatusCode, b)
	}
	for {
		_, _, err := st.next()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("stream after sign-out: %v; want its end", err)
		}
	}
	for {
		_, _, err := conn.Read(ctx)
		if err == nil {
			continue
		}
		if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Errorf("terminal after sign-out: %v; want closed with policy violation", err)
		}
		break
	}
	for _, p := range []string{"/dashboard/api/session", "/v2/sandboxes", "/dashboard/api/sandboxes/" + sb.ID + "/files"} {
		if resp, b := s.do(t, ctx, "GET", p, nil, false); resp.StatusCode != 401 {
			t.Errorf("GET %s after sign-out: %d %s; want 401", p, resp.StatusCode, b)
		}
	}

	// A session of a key that is then deleted ends with it.
	out, stderr, code := srv.CLI(ctx, nil, "key", "create", "--name", "dash-doomed")
	if code != 0 {
		t.Fatalf("sbx key create: %d %s", code, stderr)
	}
	ks := dashSignIn(t, ctx, srv, strings.TrimSpace(out))
	kst := openStream(t, ctx, ks)
	if ev, _, err := kst.next(); err != nil || ev != "snapshot" {
		t.Fatalf("first event %q %v", ev, err)
	}
	if code, b := teamSend(t, ctx, "DELETE", srv.URL+"/sbx/v1/keys/"+ks.KeyID, srv.APIKey, nil); code != 204 {
		t.Fatalf("delete key: %d %s", code, b)
	}
	for {
		if _, _, err := kst.next(); err != nil {
			break
		}
	}
	if resp, _ := ks.do(t, ctx, "GET", "/v2/sandboxes", nil, false); resp.StatusCode != 401 {
		t.Errorf("deleted key's session: %d; want 401", resp.StatusCode)
	}
}
