package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// terminalRow times a key press's echo through the dashboard's terminal
// WebSocket (server → agent → PTY → agent → server → browser side), n
// times, against the same key press through the SDK's PTY process (the
// data plane, no WebSocket). Both type into `cat` on a PTY, whose line
// discipline echoes each key.
func terminalRow(ctx context.Context, srv *harness.Server, c *client.Client, n int) row {
	sb := must(c.CreateSandbox(ctx, client.CreateOptions{}))
	defer sb.Kill(ctx)

	// The dashboard's terminal.
	body, _ := json.Marshal(map[string]string{"apiKey": srv.APIKey})
	resp := must(http.Post(srv.URL+"/dashboard/api/session", "application/json", bytes.NewReader(body)))
	resp.Body.Close()
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "sbx_session" {
			cookie = ck
		}
	}
	if cookie == nil {
		fatalf("sign in: %d, no cookie", resp.StatusCode)
	}
	h := http.Header{"Origin": {srv.URL}, "Cookie": {cookie.Name + "=" + cookie.Value}}
	conn, _, err := websocket.Dial(ctx, strings.Replace(srv.URL, "http", "ws", 1)+"/dashboard/api/sandboxes/"+sb.ID+"/terminal?cols=80&rows=24", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		fatal(err)
	}
	defer conn.CloseNow()
	var seen bytes.Buffer
	readUntil := func(want string) {
		for !strings.Contains(seen.String(), want) {
			typ, b, err := conn.Read(ctx)
			if err != nil {
				fatalf("terminal: waiting for %q: %v", want, err)
			}
			if typ == websocket.MessageBinary {
				seen.Write(b)
			}
		}
	}
	must(0, conn.Write(ctx, websocket.MessageBinary, []byte("exec cat\r")))
	readUntil("exec cat\r\n")
	ws := make([]time.Duration, 0, n)
	for range n {
		seen.Reset()
		t0 := time.Now()
		must(0, conn.Write(ctx, websocket.MessageBinary, []byte("a")))
		readUntil("a")
		ws = append(ws, time.Since(t0))
	}

	// The SDK's PTY.
	out := &chunks{c: make(chan []byte, 64)}
	p := must(sb.Start(ctx, client.ExecOptions{Cmd: "/bin/sh", Args: []string{"-c", "exec cat"}, PTY: &client.PTYSize{Cols: 80, Rows: 24}, Stdout: out, KeepStdin: true}))
	defer p.Kill(ctx)
	sdk := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		must(0, p.SendInput(ctx, []byte("a")))
		for b := range out.c {
			if bytes.Contains(b, []byte("a")) {
				break
			}
		}
		sdk = append(sdk, time.Since(t0))
	}
	return row{"terminal key press echo through the dashboard's WebSocket, vs the SDK's PTY", ws, sdk, ""}
}

// chunks is a Writer that hands on each write.
type chunks struct {
	mu sync.Mutex
	c  chan []byte
}

func (w *chunks) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.c <- bytes.Clone(b)
	return len(b), nil
}

var _ io.Writer = (*chunks)(nil)
