package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func envelope(flags byte, payload string) []byte {
	out := make([]byte, 5, 5+len(payload))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(payload)))
	return append(out, payload...)
}

// failingReader returns data, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	// Small reads, so that envelopes arrive split across them.
	if len(p) > 3 {
		p = p[:3]
	}
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func streamThrough(t *testing.T, body []byte, end error) ([]byte, error) {
	return streamThroughKilled(t, body, end, nil)
}

func streamThroughKilled(t *testing.T, body []byte, end error, killed func() bool) ([]byte, error) {
	t.Helper()
	resp := &http.Response{Header: http.Header{"Content-Type": {"application/connect+json"}},
		Body: io.NopCloser(&failingReader{r: bytes.NewReader(body), err: end})}
	if err := endConnectStreams(killed)(resp); err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(resp.Body)
}

func TestConnectStreamCut(t *testing.T) {
	msgs := append(envelope(0, `{"a":1}`), envelope(0, `{"b":2}`)...)
	reset := errors.New("connection reset by peer")

	// A stream the agent ended itself passes through as it came.
	whole := append(append([]byte{}, msgs...), envelope(connectEndStream, `{}`)...)
	if got, err := streamThrough(t, whole, io.EOF); err != nil || !bytes.Equal(got, whole) {
		t.Fatalf("complete stream: %q, %v", got, err)
	}
	// Cut between messages, by an end or an error: sbx ends it, with
	// code unavailable.
	for _, end := range []error{io.EOF, reset} {
		got, err := streamThrough(t, msgs, end)
		if err != nil || !bytes.HasPrefix(got, msgs) {
			t.Fatalf("cut after %v: %q, %v", end, got, err)
		}
		tail := got[len(msgs):]
		if len(tail) < 5 || tail[0] != connectEndStream || int(binary.BigEndian.Uint32(tail[1:5])) != len(tail)-5 ||
			!strings.Contains(string(tail[5:]), `"code":"unavailable"`) || !strings.Contains(string(tail[5:]), "went away") {
			t.Fatalf("cut after %v: end-stream message %q", end, tail)
		}
	}
	// Cut because the sandbox was killed: code unknown and "terminated",
	// which the e2b SDKs read as a sandbox killed while the request was in
	// flight.
	got, err := streamThroughKilled(t, msgs, io.EOF, func() bool { return true })
	if err != nil || !bytes.HasPrefix(got, msgs) {
		t.Fatalf("cut by a kill: %q, %v", got, err)
	}
	if tail := string(got[len(msgs)+5:]); got[len(msgs)] != connectEndStream ||
		!strings.Contains(tail, `"code":"unknown"`) || !strings.Contains(tail, "terminated") {
		t.Fatalf("cut by a kill: end-stream message %q", tail)
	}
	// Cut inside a message: nothing valid can follow; the failure shows.
	half := append(append([]byte{}, msgs...), envelope(0, `{"c":3}`)[:7]...)
	if got, err := streamThrough(t, half, reset); !errors.Is(err, reset) || !bytes.Equal(got, half) {
		t.Fatalf("cut inside a message: %q, %v", got, err)
	}
	// Other responses are left alone.
	resp := &http.Response{Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader("{}"))}
	endConnectStreams(nil)(resp)
	if _, ok := resp.Body.(*connectStream); ok {
		t.Fatal("a unary response was wrapped")
	}
}
