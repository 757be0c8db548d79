// Package errdefs holds the error classes that sbx's layers share. Code below
// the API wraps one of these sentinels (fmt.Errorf("...: %w", errdefs.ErrNotFound))
// and package errhttp maps the class, never the text, to an HTTP status and
// an E2B-shaped error body in one place, for the control plane and the data
// plane alike.
package errdefs

import (
	"errors"
	"fmt"
)

// The error classes. Test with errors.Is.
var (
	ErrNotFound           = errors.New("not found")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrConflict           = errors.New("conflict")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnauthenticated    = errors.New("unauthenticated")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrUnavailable        = errors.New("unavailable")
	ErrTooLarge           = errors.New("too large")
	// ErrResourceExhausted is a quota reached (429: the e2b SDKs raise
	// RateLimitError).
	ErrResourceExhausted = errors.New("resource exhausted")
)

// Error is an error whose Message is safe to show to an API client, apart
// from the cause that is only logged.
type Error struct {
	// Class is one of the sentinels above.
	Class error
	// Message is shown to the client.
	Message string
	// Cause is logged, never shown.
	Cause error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Message + ": " + e.Cause.Error()
	}
	return e.Message
}

// Is reports whether target is e's class.
func (e *Error) Is(target error) bool { return target == e.Class }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// New returns an error of class with a client-safe message.
func New(class error, format string, args ...any) error {
	return &Error{Class: class, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of class with a client-safe message and a cause
// that is logged but not shown.
func Wrap(class error, cause error, format string, args ...any) error {
	return &Error{Class: class, Message: fmt.Sprintf(format, args...), Cause: cause}
}

// Message returns the client-safe message of err: the Message of the first
// *Error in its chain, else the class's own text, else "internal error".
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	for _, c := range []error{ErrNotFound, ErrInvalidArgument, ErrConflict, ErrFailedPrecondition, ErrUnauthenticated, ErrPermissionDenied, ErrUnavailable, ErrTooLarge, ErrResourceExhausted} {
		if errors.Is(err, c) {
			return c.Error()
		}
	}
	return "internal error"
}
