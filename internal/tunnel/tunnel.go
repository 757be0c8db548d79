// Package tunnel is the protocol by which sbx serve reaches a TCP port inside
// a sandbox through the sandbox's agent: an HTTP/1.1 request
//
//	GET /sbx/tunnel?port=N
//	Connection: Upgrade
//	Upgrade: sbx-tunnel
//	X-Access-Token: <the sandbox's access token>
//
// on the agent's socket, answered by 101 Switching Protocols, after which the
// connection carries the raw byte stream of a connection the agent dialled
// to 127.0.0.1:N (or [::1]:N) in the sandbox's network namespace. The agent
// serves it (internal/agent); the server's proxy dials it with [Dial]. The
// route, the Upgrade token and the header are the agent's contract, in
// package agentapi.
package tunnel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sbxdev/sbx/internal/agentapi"
)

type closeWriter interface{ CloseWrite() error }

// Dial opens a tunnel to TCP port on loopback inside a sandbox, over
// conn, an open connection to the sandbox agent's socket. It sends the
// upgrade request with token, waits for the agent's answer, and returns a
// connection that carries the raw byte stream (bytes the agent sent right
// after its answer included). The returned connection supports CloseWrite
// when conn does. On error the caller still owns conn and should close it.
func Dial(ctx context.Context, conn net.Conn, token string, port int) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("dial tunnel: port %d out of range", port)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := fmt.Sprintf("GET %s?port=%d HTTP/1.1\r\nHost: sbx-agent\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s: %s\r\n\r\n",
		agentapi.TunnelPath, port, agentapi.TunnelProtocol, agentapi.AccessTokenHeader, token)
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, dialErr(ctx, port, err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, dialErr(ctx, port, err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		defer res.Body.Close()
		var body struct {
			Message string `json:"message"`
		}
		_ = json.NewDecoder(io.LimitReader(res.Body, 4096)).Decode(&body)
		if body.Message == "" {
			body.Message = res.Status
		}
		return nil, &Error{Port: port, StatusCode: res.StatusCode, Message: body.Message}
	}
	if !stop() { // ctx ended just now; the deadline may have been cut
		return nil, dialErr(ctx, port, ctx.Err())
	}
	_ = conn.SetDeadline(time.Time{})
	return &tunnelConn{Conn: conn, r: br}, nil
}

func dialErr(ctx context.Context, port int, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return fmt.Errorf("dial tunnel to port %d: %w", port, err)
}

// Error is the agent's refusal of a tunnel: StatusCode 502 when
// nothing listens on the port, 400 for a bad port, 401 for a bad token.
type Error struct {
	Port       int
	StatusCode int
	Message    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("dial tunnel to port %d: agent answered %d: %s", e.Port, e.StatusCode, e.Message)
}

// tunnelConn reads through the reader that parsed the agent's answer, so no
// byte it buffered is lost.
type tunnelConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *tunnelConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the tunnel if the underlying connection can.
func (c *tunnelConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
