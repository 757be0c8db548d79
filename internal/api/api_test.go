package api

import (
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/errhttp"
)

func TestDecode(t *testing.T) {
	type body struct {
		Name    string `json:"name"`
		Timeout *int64 `json:"timeout"`
	}
	for _, tc := range []struct {
		name     string
		in       string
		optional bool
		class    error // nil: success
		msg      string
	}{
		{"object", `{"name":"a","timeout":3}`, false, nil, ""},
		{"unknown fields ignored", `{"name":"a","other":1}`, false, nil, ""},
		{"trailing whitespace", "{\"name\":\"a\"}\n\t ", false, nil, ""},
		{"empty optional", ``, true, nil, ""},
		{"empty required", ``, false, errdefs.ErrInvalidArgument, "request body is empty"},
		{"whitespace only required", "  \n", false, errdefs.ErrInvalidArgument, "request body is empty"},
		{"trailing object", `{"name":"a"}{"name":"b"}`, false, errdefs.ErrInvalidArgument, "trailing data"},
		{"trailing garbage", `{"name":"a"} x`, false, errdefs.ErrInvalidArgument, "trailing data"},
		{"wrong type", `{"name":1}`, false, errdefs.ErrInvalidArgument, `field "name" must be string`},
		{"wrong type nested", `{"timeout":"soon"}`, true, errdefs.ErrInvalidArgument, `field "timeout" must be int64`},
		{"syntax", `{"name":}`, false, errdefs.ErrInvalidArgument, "syntax error at byte"},
		{"truncated", `{"name":"a"`, false, errdefs.ErrInvalidArgument, "unexpected end of input"},
		{"not an object", `[1]`, false, errdefs.ErrInvalidArgument, "malformed JSON body"},
		{"oversized", `{"name":"` + strings.Repeat("a", maxBodyBytes) + `"}`, false, errdefs.ErrTooLarge, "larger than 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.in))
			w := httptest.NewRecorder()
			var v body
			err := decode(w, r, &v, tc.optional)
			if tc.class == nil {
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.class) {
				t.Fatalf("decode error = %v, want class %v", err, tc.class)
			}
			if msg := errdefs.Message(err); !strings.Contains(msg, tc.msg) {
				t.Errorf("message = %q, want it to contain %q", msg, tc.msg)
			}
			if status := errhttp.Status(err); tc.class == errdefs.ErrTooLarge && status != http.StatusRequestEntityTooLarge {
				t.Errorf("status = %d, want 413", status)
			}
			// Messages describe the problem without echoing input.
			if msg := errdefs.Message(err); strings.Contains(msg, "soon") || strings.Contains(msg, "aaaa") {
				t.Errorf("message echoes input: %q", msg)
			}
		})
	}
}

func TestSeconds(t *testing.T) {
	p := func(n int64) *int64 { return &n }
	const maxSecs = int64(100 * 365 * 24 * 60 * 60)
	for _, tc := range []struct {
		in   *int64
		want *time.Duration
		err  string
	}{
		{nil, nil, ""},
		{p(0), new(time.Duration), ""},
		{p(90), ptr(90 * time.Second), ""},
		{p(maxSecs), ptr(time.Duration(maxSecs) * time.Second), ""},
		{p(-1), nil, "timeout must not be negative"},
		{p(maxSecs + 1), nil, "timeout is too large"},
		{p(1 << 62), nil, "timeout is too large"},
	} {
		got, err := seconds("timeout", tc.in)
		if tc.err != "" {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.Message(err) != tc.err {
				t.Errorf("seconds(%v) error = %v, want %q", deref(tc.in), err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("seconds(%v): %v", deref(tc.in), err)
			continue
		}
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("seconds(%v) = %v, want %v", deref(tc.in), deref(got), deref(tc.want))
		}
	}
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestParseMetadataQuery(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{"", nil, true},
		{"user=alice", map[string]string{"user": "alice"}, true},
		{"user=alice&team=x%20y", map[string]string{"user": "alice", "team": "x y"}, true},
		{"user=alice&user=bob", map[string]string{"user": "bob"}, true},
		{"flag", map[string]string{"flag": ""}, true},
		{"user=%zz", nil, false},
		{"a;b", nil, false},
	} {
		got, err := parseMetadataQuery(tc.in)
		if !tc.ok {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("parseMetadataQuery(%q) error = %v, want invalid argument", tc.in, err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("parseMetadataQuery(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseStates(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
		ok   bool
	}{
		{nil, nil, true},
		{[]string{""}, nil, true},
		{[]string{"running"}, []string{"running"}, true},
		{[]string{"running,paused"}, []string{"running", "paused"}, true},
		{[]string{"running", "failed"}, []string{"running", "failed"}, true},
		{[]string{"running,,failed,"}, []string{"running", "failed"}, true},
		{[]string{"killed"}, nil, false},
		{[]string{"creating"}, nil, false},
		{[]string{"running", "Running"}, nil, false},
		{[]string{"running paused"}, nil, false},
	} {
		got, err := parseStates(tc.in)
		if !tc.ok {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("parseStates(%q) error = %v, want invalid argument", tc.in, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseStates(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestAtoiDefault(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"", 7, true},
		{"0", 0, true},
		{"42", 42, true},
		{"-1", 0, false},
		{"x", 0, false},
		{"1.5", 0, false},
	} {
		got, err := atoiDefault(tc.in, 7)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("atoiDefault(%q, 7) = %d, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("atoiDefault(%q) error class: %v", tc.in, err)
		}
	}
}
