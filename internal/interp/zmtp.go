package interp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// A minimal ZMTP 3.0 peer (https://rfc.zeromq.org/spec/23/): the NULL
// security mechanism, one connection per socket, and the two socket types a
// Jupyter client needs, DEALER (shell) and SUB (iopub). The kernel binds and
// is the only peer, so none of ZeroMQ's routing, queueing or reconnection is
// needed, and a dependency-free implementation keeps the agent static and
// small.

// zmtpConn is one ZMTP connection. Send is safe for concurrent use; Recv is
// called by one goroutine.
type zmtpConn struct {
	c   net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
	w   *bufio.Writer
}

// maxFrame bounds one frame read from the kernel: a display_data message
// of a large image is tens of MiB at most; a bigger length is a corrupt
// stream.
const maxFrame = 1 << 30

// zmtpDial connects to a ZMTP endpoint over c and completes the handshake
// as a socket of type sockType ("DEALER" or "SUB").
func zmtpHandshake(c net.Conn, sockType string) (*zmtpConn, error) {
	z := &zmtpConn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10)}
	var greet [64]byte
	greet[0] = 0xff
	greet[9] = 0x7f
	greet[10] = 3 // version 3.0
	greet[11] = 0
	copy(greet[12:32], "NULL")
	// greet[32] as-server = 0; the rest is filler.
	if _, err := z.w.Write(greet[:]); err != nil {
		return nil, err
	}
	// READY with the socket type (and an empty identity for a DEALER, so the
	// kernel's ROUTER makes one up).
	var cmd []byte
	cmd = append(cmd, 5)
	cmd = append(cmd, "READY"...)
	cmd = appendProp(cmd, "Socket-Type", sockType)
	if sockType == "DEALER" {
		cmd = appendProp(cmd, "Identity", "")
	}
	if err := z.writeFrame(cmd, false, true); err != nil {
		return nil, err
	}
	if err := z.w.Flush(); err != nil {
		return nil, err
	}
	var peer [64]byte
	if _, err := io.ReadFull(z.r, peer[:]); err != nil {
		return nil, fmt.Errorf("zmtp greeting: %w", err)
	}
	if peer[0] != 0xff || peer[9] != 0x7f || peer[10] < 3 {
		return nil, errors.New("zmtp greeting: not a ZMTP 3 peer")
	}
	body, _, command, err := z.readFrame()
	if err != nil {
		return nil, fmt.Errorf("zmtp handshake: %w", err)
	}
	if !command || len(body) < 6 || string(body[1:6]) != "READY" {
		return nil, errors.New("zmtp handshake: the peer sent no READY")
	}
	return z, nil
}

func appendProp(b []byte, name, value string) []byte {
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(value)))
	return append(b, value...)
}

func (z *zmtpConn) writeFrame(b []byte, more, command bool) error {
	var flags byte
	if more {
		flags |= 1
	}
	if command {
		flags |= 4
	}
	var hdr [9]byte
	n := 2
	if len(b) > 255 {
		flags |= 2
		hdr[0] = flags
		binary.BigEndian.PutUint64(hdr[1:], uint64(len(b)))
		n = 9
	} else {
		hdr[0] = flags
		hdr[1] = byte(len(b))
	}
	if _, err := z.w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := z.w.Write(b)
	return err
}

// readFrame reads one frame: its body, whether more frames of the message
// follow, and whether it is a command.
func (z *zmtpConn) readFrame() (body []byte, more, command bool, err error) {
	flags, err := z.r.ReadByte()
	if err != nil {
		return nil, false, false, err
	}
	var size uint64
	if flags&2 != 0 {
		var b [8]byte
		if _, err := io.ReadFull(z.r, b[:]); err != nil {
			return nil, false, false, err
		}
		size = binary.BigEndian.Uint64(b[:])
	} else {
		b, err := z.r.ReadByte()
		if err != nil {
			return nil, false, false, err
		}
		size = uint64(b)
	}
	if size > maxFrame {
		return nil, false, false, fmt.Errorf("zmtp: frame of %d bytes", size)
	}
	body = make([]byte, size)
	if _, err := io.ReadFull(z.r, body); err != nil {
		return nil, false, false, err
	}
	return body, flags&1 != 0, flags&4 != 0, nil
}

// Send sends one multipart message.
func (z *zmtpConn) Send(parts [][]byte) error {
	z.wmu.Lock()
	defer z.wmu.Unlock()
	for i, p := range parts {
		if err := z.writeFrame(p, i < len(parts)-1, false); err != nil {
			return err
		}
	}
	return z.w.Flush()
}

// Recv reads the next multipart message, skipping commands (PING and the
// like, which a ZMTP 3.0 peer does not send, but a 3.1 one may).
func (z *zmtpConn) Recv() ([][]byte, error) {
	var parts [][]byte
	for {
		body, more, command, err := z.readFrame()
		if err != nil {
			return nil, err
		}
		if command {
			continue
		}
		parts = append(parts, body)
		if !more {
			return parts, nil
		}
	}
}

// Subscribe subscribes a SUB socket to every topic (ZMTP 3.0 sends the
// subscription as a message: 0x01 then the prefix).
func (z *zmtpConn) Subscribe() error { return z.Send([][]byte{{1}}) }

// Close closes the connection.
func (z *zmtpConn) Close() error { return z.c.Close() }
