package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
)

// Error classes. An error returned by this package matches at most one of
// them with [errors.Is]; they are never compared by text.
var (
	// ErrNotFound: the sandbox, key, template or process does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: the request was malformed or a value was refused.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrConflict: the request conflicts with the current state, such as
	// deleting a template that sandboxes still use.
	ErrConflict = errors.New("conflict")
	// ErrUnauthenticated: the API key or access token is missing or wrong.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the caller is known but may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnavailable: the server or the sandbox cannot serve the request now.
	ErrUnavailable = errors.New("unavailable")
)

// APIError is an error response of the control plane: an HTTP status of 400
// or above and the E2B error body {"code", "message"}.
type APIError struct {
	// StatusCode is the HTTP status of the response.
	StatusCode int `json:"code"`
	// Message is the server's explanation, safe to show to a user.
	Message string `json:"message"`
}

// Error implements error.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("sbx: %s (HTTP %d)", msg, e.StatusCode)
}

// Is reports whether the error's status belongs to the class target, so that
// errors.Is(err, client.ErrNotFound) holds for a 404.
func (e *APIError) Is(target error) bool {
	return target != nil && statusClass(e.StatusCode) == target
}

func statusClass(status int) error {
	switch status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge:
		return ErrInvalidArgument
	case http.StatusConflict:
		return ErrConflict
	case http.StatusUnauthorized:
		return ErrUnauthenticated
	case http.StatusForbidden:
		return ErrPermissionDenied
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return ErrUnavailable
	}
	return nil
}

// RPCError is an error of a data-plane call (the envd process protocol). It
// wraps the [*connect.Error], so connect.CodeOf works on it, and matches the
// package's error classes with [errors.Is].
type RPCError struct {
	// Op names the call, such as "start process".
	Op string
	// Err is the underlying error, usually a *connect.Error.
	Err error
}

// Error implements error.
func (e *RPCError) Error() string { return "sbx: " + e.Op + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *RPCError) Unwrap() error { return e.Err }

// Is reports whether the error's Connect code belongs to the class target.
func (e *RPCError) Is(target error) bool {
	if target == nil {
		return false
	}
	var class error
	switch connect.CodeOf(e.Err) {
	case connect.CodeNotFound:
		class = ErrNotFound
	case connect.CodeInvalidArgument, connect.CodeOutOfRange:
		class = ErrInvalidArgument
	case connect.CodeAlreadyExists, connect.CodeAborted, connect.CodeFailedPrecondition:
		class = ErrConflict
	case connect.CodeUnauthenticated:
		class = ErrUnauthenticated
	case connect.CodePermissionDenied:
		class = ErrPermissionDenied
	case connect.CodeUnavailable:
		class = ErrUnavailable
	case connect.CodeDeadlineExceeded:
		// The deadline can surface as the stream's error code rather
		// than as the context's own error; both mean the same.
		class = context.DeadlineExceeded
	case connect.CodeCanceled:
		class = context.Canceled
	}
	return class == target
}

func rpcErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return &RPCError{Op: op, Err: err}
}

// IsNotFound reports whether err is of class [ErrNotFound].
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsConflict reports whether err is of class [ErrConflict].
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// IsUnauthenticated reports whether err is of class [ErrUnauthenticated].
func IsUnauthenticated(err error) bool { return errors.Is(err, ErrUnauthenticated) }
