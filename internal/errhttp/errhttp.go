// Package errhttp turns sbx's error classes (package errdefs) into HTTP
// responses: the one mapping from class to status, and the one writer of
// E2B's error body, {"code": status, "message": "..."}. The control plane
// (package api), the data plane (package proxy) and the server's top-level
// handler all answer errors through it, so every error a client sees has the
// same shape and the same status for the same class.
package errhttp

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/wire"
)

// Body is E2B's error shape, as package wire declares it.
type Body = wire.Error

// Status maps an error class to its HTTP status. This is the only place
// where sbx decides which status an error gets.
func Status(err error) int {
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
	case errors.Is(err, errdefs.ErrResourceExhausted):
		return http.StatusTooManyRequests
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// Write writes err as an E2B error body with the status of its class. The
// client sees only the error's safe message; the cause is logged.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status := Status(err)
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
	WriteMessage(w, status, msg)
}

// WriteMessage writes an E2B error body of status and message, which must be
// safe to show to the client. It is for answers whose status is not that of
// an error class, such as the data plane's 502 for a sandbox it cannot
// reach; everything else goes through Write.
func WriteMessage(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(Body{Code: status, Message: message})
}
