package errhttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TestWrite checks the one mapping from error class to HTTP status and
// E2B body, as docs/api.md documents it.
func TestWrite(t *testing.T) {
	const secret = "/var/lib/sbx/secret-path: runc said something private"
	cause := errors.New(secret)
	for _, tc := range []struct {
		name   string
		err    error
		status int
		msg    string
	}{
		{"not found", errdefs.New(errdefs.ErrNotFound, "sandbox %q not found", "x"), 404, `sandbox "x" not found`},
		{"invalid argument", errdefs.New(errdefs.ErrInvalidArgument, "bad"), 400, "bad"},
		{"conflict", errdefs.New(errdefs.ErrConflict, "in use"), 409, "in use"},
		{"failed precondition", errdefs.New(errdefs.ErrFailedPrecondition, "not running"), 409, "not running"},
		{"unauthenticated", errdefs.New(errdefs.ErrUnauthenticated, "who"), 401, "who"},
		{"permission denied", errdefs.New(errdefs.ErrPermissionDenied, "no"), 403, "no"},
		{"too large", errdefs.New(errdefs.ErrTooLarge, "big"), 413, "big"},
		{"unavailable", errdefs.New(errdefs.ErrUnavailable, "later"), 503, "later"},
		{"wrapped cause hidden", errdefs.Wrap(errdefs.ErrUnavailable, cause, "sandbox failed to start"), 503, "sandbox failed to start"},
		{"wrapped in fmt.Errorf", fmt.Errorf("kill: %w", errdefs.Wrap(errdefs.ErrNotFound, cause, "gone")), 404, "gone"},
		{"the cause's class does not leak", errdefs.Wrap(errdefs.ErrUnavailable, fmt.Errorf("restore: %w", errdefs.New(errdefs.ErrFailedPrecondition, "inner")), "resume failed"), 503, "resume failed"},
		{"nor a bare one", errdefs.Wrap(errdefs.ErrUnavailable, fmt.Errorf("template: %w", errdefs.ErrNotFound), "resume failed"), 503, "resume failed"},
		{"bare class", fmt.Errorf("%s: %w", secret, errdefs.ErrConflict), 409, "conflict"},
		{"max bytes", fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 10}), 413, "request body too large"},
		{"unknown", cause, 500, "internal error"},
		{"unknown wrapped", fmt.Errorf("open db: %w", cause), 500, "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			w := httptest.NewRecorder()
			Write(w, httptest.NewRequest("GET", "/x", nil), log, tc.err)
			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var got map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			want := map[string]any{"code": float64(tc.status), "message": tc.msg}
			if len(got) != 2 || got["code"] != want["code"] || got["message"] != want["message"] {
				t.Errorf("body = %v, want %v", got, want)
			}
			if strings.Contains(w.Body.String(), "secret-path") {
				t.Errorf("body leaks the cause: %s", w.Body)
			}
			// The cause is not shown, but it is logged.
			if !strings.Contains(logs.String(), "request failed") {
				t.Errorf("nothing logged: %q", logs.String())
			}
			if tc.err != nil && errors.Is(tc.err, cause) && !strings.Contains(logs.String(), "secret-path") {
				t.Errorf("the cause is not logged: %q", logs.String())
			}
		})
	}
}

func TestStatusOfEveryClass(t *testing.T) {
	// Every class errdefs.Message knows must map to something other than
	// 500, so adding a class without a status fails here.
	for class, status := range map[error]int{
		errdefs.ErrNotFound:           http.StatusNotFound,
		errdefs.ErrInvalidArgument:    http.StatusBadRequest,
		errdefs.ErrConflict:           http.StatusConflict,
		errdefs.ErrFailedPrecondition: http.StatusConflict,
		errdefs.ErrUnauthenticated:    http.StatusUnauthorized,
		errdefs.ErrPermissionDenied:   http.StatusForbidden,
		errdefs.ErrTooLarge:           http.StatusRequestEntityTooLarge,
		errdefs.ErrUnavailable:        http.StatusServiceUnavailable,
		errdefs.ErrResourceExhausted:  http.StatusTooManyRequests,
	} {
		if got := Status(class); got != status {
			t.Errorf("Status(%v) = %d, want %d", class, got, status)
		}
		if got := errdefs.Message(class); got == "internal error" {
			t.Errorf("errdefs.Message(%v) = %q", class, got)
		}
	}
}
