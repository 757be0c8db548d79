package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// errorBody is E2B's error shape.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// statusOf maps an error class to its HTTP status. This is the only place
// where sbx decides which status an error gets.
func statusOf(err error) int {
	// The outermost *errdefs.Error is what the client is told (its
	// Message); its class, not one of its cause's, decides the status: a
	// failed resume whose cause was a missing file is not a 404.
	var e *errdefs.Error
	if errors.As(err, &e) {
		err = e.Class
	}
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, errdefs.ErrConflict), errors.Is(err, errdefs.ErrFailedPrecondition):
		return http.StatusConflict
	case errors.Is(err, errdefs.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, errdefs.ErrPermissionDenied):
		return http.StatusForbidden
	case errors.Is(err, errdefs.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errdefs.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// writeError writes err as an E2B error body. The client sees only the
// error's safe message; the cause is logged.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status := statusOf(err)
	msg := errdefs.Message(err)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		msg = "request body too large"
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	writeJSON(w, status, errorBody{Code: status, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// handlerFunc is an HTTP handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error
