package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// Connect streams cut short
//
// The agent's streaming RPCs (Process Start/Connect, Filesystem WatchDir) are
// Connect streams: enveloped messages (a flags byte, a 4-byte big-endian
// length, the payload), the last of which, flagged 0x02, carries the
// outcome. When the box dies mid-stream its socket just ends, and a client
// read "protocol error: incomplete envelope" or "missing end-stream": code
// internal, as if sbx or the agent had a bug. The proxy follows the envelope
// boundaries of a streaming response and, if the agent's side ends or fails
// between two messages without having sent its end-stream message, ends the
// stream itself with code unavailable and a message saying what happened.
// (Cut inside a message, the stream is left broken as it came: no valid
// frame can follow half of one.)
//
// A stream cut because the sandbox was killed ends instead as E2B's own
// proxy leaves it: code unknown, the connection "terminated". The e2b SDKs
// then probe the sandbox's health (502: gone) and report that the sandbox
// was killed or reached its end of life while the request was in flight,
// rather than a timeout.

// connectEndStream is the Connect end-stream flag.
const connectEndStream = 0x02

// endConnectStreams returns the agent proxy's ModifyResponse, which wraps
// the body of a Connect streaming response; see above. killed, asked when a
// stream is cut, reports whether its sandbox was killed.
func endConnectStreams(killed func() bool) func(*http.Response) error {
	return func(resp *http.Response) error {
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/connect+") {
			resp.Body = &connectStream{body: resp.Body, killed: killed}
		}
		return nil
	}
}

// connectStream passes a Connect stream through, tracking its envelopes.
type connectStream struct {
	body io.ReadCloser
	// hdr collects the current envelope's header, hn bytes of it so far;
	// left is what remains of its payload.
	hdr  [5]byte
	hn   int
	left int64
	// ended: the agent sent its end-stream message.
	ended bool
	// tail is the end-stream message sbx sends in the agent's place.
	tail *bytes.Reader
	// killed reports whether the sandbox was killed; nil: never.
	killed func() bool
}

func (s *connectStream) Read(p []byte) (int, error) {
	if s.tail != nil {
		return s.tail.Read(p)
	}
	n, err := s.body.Read(p)
	s.track(p[:n])
	if err != nil && !s.ended && s.hn == 0 && s.left == 0 {
		code, msg := "unavailable", "the sandbox's agent went away in the middle of the stream (the sandbox stopped or failed; GET /sandboxes/{id} says why)"
		if s.killed != nil && s.killed() {
			code, msg = "unknown", "the connection to the sandbox was terminated: the sandbox was killed"
		}
		if !errors.Is(err, io.EOF) {
			msg += ": " + err.Error()
		}
		s.tail = bytes.NewReader(endStreamMessage(code, msg))
		if n > 0 {
			return n, nil
		}
		return s.tail.Read(p)
	}
	return n, err
}

// track follows the envelopes in b, the next bytes of the stream.
func (s *connectStream) track(b []byte) {
	for len(b) > 0 {
		if s.left > 0 {
			k := min(int64(len(b)), s.left)
			s.left -= k
			b = b[k:]
			continue
		}
		k := copy(s.hdr[s.hn:], b)
		s.hn += k
		b = b[k:]
		if s.hn == len(s.hdr) {
			s.hn = 0
			s.left = int64(binary.BigEndian.Uint32(s.hdr[1:]))
			if s.hdr[0]&connectEndStream != 0 {
				s.ended = true
			}
		}
	}
}

func (s *connectStream) Close() error { return s.body.Close() }

// endStreamMessage is a Connect end-stream envelope carrying an error.
func endStreamMessage(code, message string) []byte {
	type connectError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	payload, _ := json.Marshal(struct {
		Error connectError `json:"error"`
	}{connectError{code, message}})
	out := make([]byte, 5, 5+len(payload))
	out[0] = connectEndStream
	binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
	return append(out, payload...)
}
