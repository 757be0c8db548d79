package agent

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// classes maps each error class to its Connect code and HTTP status. It is
// the one place where the agent turns error classes into wire errors.
var classes = []struct {
	class  error
	code   connect.Code
	status int
}{
	{errdefs.ErrNotFound, connect.CodeNotFound, http.StatusNotFound},
	{errdefs.ErrInvalidArgument, connect.CodeInvalidArgument, http.StatusBadRequest},
	{errdefs.ErrConflict, connect.CodeAlreadyExists, http.StatusConflict},
	{errdefs.ErrFailedPrecondition, connect.CodeFailedPrecondition, http.StatusPreconditionFailed},
	{errdefs.ErrUnauthenticated, connect.CodeUnauthenticated, http.StatusUnauthorized},
	{errdefs.ErrPermissionDenied, connect.CodePermissionDenied, http.StatusForbidden},
	{errdefs.ErrUnavailable, connect.CodeUnavailable, http.StatusServiceUnavailable},
	{errdefs.ErrTooLarge, connect.CodeResourceExhausted, http.StatusRequestEntityTooLarge},
}

// connectError turns err into a Connect error carrying only the client-safe
// message; the cause is logged.
func connectError(log *slog.Logger, procedure string, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	code := connect.CodeInternal
	for _, c := range classes {
		if errors.Is(err, c.class) {
			code = c.code
			break
		}
	}
	if code == connect.CodeInternal {
		log.Error("request failed", "procedure", procedure, "err", err)
	} else {
		log.Debug("request failed", "procedure", procedure, "code", code.String(), "err", err)
	}
	return connect.NewError(code, errors.New(errdefs.Message(err)))
}

// httpStatus returns the HTTP status for err's class.
func httpStatus(err error) int {
	for _, c := range classes {
		if errors.Is(err, c.class) {
			return c.status
		}
	}
	return http.StatusInternalServerError
}

// writeJSONError writes the envd/E2B error body {"code":..,"message":..}.
func writeJSONError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{status, message})
}

// writeError writes err to a plain HTTP route: the status of its class and
// its client-safe message. Internal causes are logged.
func writeError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	status := httpStatus(err)
	if status >= 500 {
		log.Error("request failed", "path", r.URL.Path, "err", err)
	} else {
		log.Debug("request failed", "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSONError(w, status, errdefs.Message(err))
}
