package l7

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// SOCKS5 is a user's SOCKS5 proxy that a sandbox's egress goes through
// (E2B's egressProxy).
type SOCKS5 struct {
	Address  string `json:"address"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Check validates p. Errors are errdefs.ErrInvalidArgument.
func (p *SOCKS5) Check() error {
	host, port, err := net.SplitHostPort(p.Address)
	if err != nil || host == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "network.egressProxy.address: want host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errdefs.New(errdefs.ErrInvalidArgument, "network.egressProxy.address: port must be 1-65535")
	}
	if len(p.Username) > 255 || len(p.Password) > 255 {
		return errdefs.New(errdefs.ErrInvalidArgument, "network.egressProxy: username and password are at most 255 bytes")
	}
	if p.Password != "" && p.Username == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "network.egressProxy: a password needs a username")
	}
	return nil
}

// Dial connects to dst through the proxy at proxyAddr (already resolved
// and checked by the caller). name, when set, is sent instead of dst's
// address (ATYP domain: the proxy resolves it).
func (p *SOCKS5) Dial(ctx context.Context, proxyAddr netip.AddrPort, dst netip.AddrPort, name string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr.String())
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if err := p.handshake(c, dst, name); err != nil {
		c.Close()
		return nil, fmt.Errorf("egress proxy %s: %w", p.Address, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

var errSOCKS = errors.New("not a SOCKS5 proxy, or it refused")

func (p *SOCKS5) handshake(c net.Conn, dst netip.AddrPort, name string) error {
	methods := []byte{5, 1, 0}
	if p.Username != "" {
		methods = []byte{5, 1, 2}
	}
	if _, err := c.Write(methods); err != nil {
		return err
	}
	var rep [2]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return err
	}
	if rep[0] != 5 || rep[1] != methods[2] {
		return fmt.Errorf("%w (method %d)", errSOCKS, rep[1])
	}
	if p.Username != "" {
		msg := append([]byte{1, byte(len(p.Username))}, p.Username...)
		msg = append(append(msg, byte(len(p.Password))), p.Password...)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, rep[:]); err != nil {
			return err
		}
		if rep[1] != 0 {
			return errors.New("the proxy refused the credentials")
		}
	}
	req := []byte{5, 1, 0}
	if name != "" && len(name) <= 255 {
		req = append(append(req, 3, byte(len(name))), name...)
	} else {
		a := dst.Addr().As4()
		req = append(append(req, 1), a[:]...)
	}
	req = binary.BigEndian.AppendUint16(req, dst.Port())
	if _, err := c.Write(req); err != nil {
		return err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	if hdr[0] != 5 || hdr[1] != 0 {
		return fmt.Errorf("connect to %s refused (reply %d)", dst, hdr[1])
	}
	var skip int
	switch hdr[3] {
	case 1:
		skip = 4
	case 4:
		skip = 16
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return err
		}
		skip = int(l[0])
	default:
		return errSOCKS
	}
	_, err := io.ReadFull(c, make([]byte, skip+2))
	return err
}
