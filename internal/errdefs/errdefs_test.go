package errdefs

import (
	"errors"
	"fmt"
	"testing"
)

var classes = []error{ErrNotFound, ErrInvalidArgument, ErrConflict, ErrFailedPrecondition, ErrUnauthenticated, ErrPermissionDenied, ErrUnavailable, ErrTooLarge, ErrResourceExhausted}

func TestClassesDistinct(t *testing.T) {
	for i, a := range classes {
		for j, b := range classes {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
}

func TestNew(t *testing.T) {
	err := New(ErrNotFound, "sandbox %q not found", "x")
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		t.Errorf("class of %v is wrong", err)
	}
	if got, want := err.Error(), `sandbox "x" not found`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := Message(err); got != `sandbox "x" not found` {
		t.Errorf("Message = %q", got)
	}
	if errors.Unwrap(err) != nil {
		t.Errorf("New has a cause: %v", errors.Unwrap(err))
	}
}

func TestWrap(t *testing.T) {
	cause := errors.New("runc: /run/secret: permission denied")
	err := Wrap(ErrUnavailable, cause, "sandbox failed to start")
	if !errors.Is(err, ErrUnavailable) {
		t.Error("Wrap lost its class")
	}
	if !errors.Is(err, cause) {
		t.Error("Wrap lost its cause")
	}
	// The cause is in the logged text, never in the client's message.
	if got, want := err.Error(), "sandbox failed to start: runc: /run/secret: permission denied"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := Message(err); got != "sandbox failed to start" {
		t.Errorf("Message = %q", got)
	}
	// A class in the cause does not leak into the wrapper's class.
	inner := Wrap(ErrInvalidArgument, New(ErrNotFound, "inner"), "outer")
	if !errors.Is(inner, ErrInvalidArgument) || Message(inner) != "outer" {
		t.Errorf("nested: Is(invalid)=%v Message=%q", errors.Is(inner, ErrInvalidArgument), Message(inner))
	}
	var e *Error
	if !errors.As(fmt.Errorf("ctx: %w", err), &e) || e.Class != ErrUnavailable || e.Cause != cause {
		t.Errorf("errors.As = %+v", e)
	}
}

func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{New(ErrConflict, "in use"), "in use"},
		{fmt.Errorf("kill x: %w", New(ErrNotFound, "gone")), "gone"},
		{fmt.Errorf("private detail: %w", ErrNotFound), "not found"},
		{fmt.Errorf("private detail: %w", ErrTooLarge), "too large"},
		{ErrFailedPrecondition, "failed precondition"},
		{errors.New("private detail"), "internal error"},
		{fmt.Errorf("wrapped: %w", errors.New("private detail")), "internal error"},
	} {
		if got := Message(tc.err); got != tc.want {
			t.Errorf("Message(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	for _, c := range classes {
		if got := Message(fmt.Errorf("x: %w", c)); got != c.Error() {
			t.Errorf("Message of wrapped %v = %q", c, got)
		}
	}
}
