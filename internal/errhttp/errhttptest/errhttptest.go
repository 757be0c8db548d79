// Package errhttptest checks error responses in tests of the packages that
// answer through errhttp (the control plane, the data plane and the
// server's handler), so that each checks the same shape the same way.
package errhttptest

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/wire"
)

// Want checks that w holds the E2B error body for status, decoded strictly,
// with a message containing msg.
func Want(t testing.TB, w *httptest.ResponseRecorder, status int, msg string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var b wire.Error
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if b.Code != status {
		t.Errorf("body code = %d, want %d", b.Code, status)
	}
	if !strings.Contains(b.Message, msg) {
		t.Errorf("message = %q, want it to contain %q", b.Message, msg)
	}
}
