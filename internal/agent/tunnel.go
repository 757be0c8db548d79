package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbxdev/sbx/internal/agentapi"
)

// tunnelDialTimeout bounds the dial to the port inside the sandbox.
const tunnelDialTimeout = 5 * time.Second

// serveTunnel connects the caller to a TCP port in the sandbox's network
// namespace: GET /sbx/tunnel?port=N with Upgrade: sbx-tunnel. The port is
// dialled on loopback only, so the tunnel reaches services bound to
// 127.0.0.1 but never leaves the sandbox. On success the agent answers 101
// and the connection carries raw bytes both ways.
func (a *Agent) serveTunnel(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSONError(w, http.StatusMethodNotAllowed, "tunnel requires GET")
		return
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", agentapi.TunnelProtocol) {
		writeJSONError(w, http.StatusBadRequest, "tunnel requires Connection: Upgrade and Upgrade: "+agentapi.TunnelProtocol)
		return
	}
	if r.ProtoMajor != 1 {
		writeJSONError(w, http.StatusHTTPVersionNotSupported, "tunnel requires HTTP/1.1")
		return
	}
	port, err := strconv.Atoi(r.URL.Query().Get("port"))
	if err != nil || port < 1 || port > 65535 {
		writeJSONError(w, http.StatusBadRequest, "port must be a number from 1 to 65535")
		return
	}

	// Not r.Context(): the server cancels it when the client half-closes
	// right behind its request, which is a valid way to use a tunnel.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), tunnelDialTimeout)
	defer cancel()
	var d net.Dialer
	upstream, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		var err6 error
		upstream, err6 = d.DialContext(ctx, "tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
		if err6 != nil {
			a.log.Debug("tunnel dial failed", "port", port, "err", err, "err6", err6)
			writeJSONError(w, http.StatusBadGateway, fmt.Sprintf("nothing is listening on port %d in the sandbox", port))
			return
		}
	}

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		a.log.Error("tunnel hijack", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "cannot upgrade this connection")
		return
	}
	defer conn.Close()
	defer upstream.Close()
	_ = conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+agentapi.TunnelProtocol+"\r\n\r\n"); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	a.log.Debug("tunnel open", "port", port)
	// The client may have sent bytes right after its request; the server's
	// reader holds them.
	var down io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		down = io.MultiReader(io.LimitReader(brw.Reader, int64(n)), conn)
	}
	splice(conn, upstream, down)
	a.log.Debug("tunnel closed", "port", port)
}

// splice copies client→upstream (reading from down, the client side) and
// upstream→client until both directions are done. When one side finishes
// sending, the other gets a half-close, so protocols that shut down writing
// and then read the reply keep working.
func splice(client, upstream net.Conn, down io.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(upstream, down)
		closeWrite(upstream)
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(client, upstream)
		closeWrite(client)
	}()
	wg.Wait()
}

type closeWriter interface{ CloseWrite() error }

func closeWrite(c net.Conn) {
	if cw, ok := c.(closeWriter); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
