package cli

import (
	"context"
	"strings"
	"testing"
)

func TestSplitRemote(t *testing.T) {
	tests := []struct {
		arg    string
		id, p  string
		remote bool
	}{
		{"sb1:/tmp/x", "sb1", "/tmp/x", true},
		{"sb1:rel/x", "sb1", "rel/x", true},
		{"sb1:", "sb1", "", true},
		{"./a:b", "", "./a:b", false},
		{"/x:y", "", "/x:y", false},
		{":x", "", ":x", false},
		{"plain", "", "plain", false},
	}
	for _, tt := range tests {
		id, p, remote := splitRemote(tt.arg)
		if id != tt.id || p != tt.p || remote != tt.remote {
			t.Errorf("splitRemote(%q) = %q, %q, %v", tt.arg, id, p, remote)
		}
	}
}

func TestFilesUsage(t *testing.T) {
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"cp", "a"}, "want a source and a destination"},
		{[]string{"cp", "a", "b"}, "exactly one of"},
		{[]string{"cp", "s:/a", "t:/b"}, "exactly one of"},
		{[]string{"cp", "a", "sb1:"}, "empty path"},
		{[]string{"cat", "sb1"}, "want a sandbox ID and a path"},
		{[]string{"ls", "sb1", "/a", "/b"}, `unexpected argument "/b"`},
	}
	for _, tt := range tests {
		r := sbx(t, context.Background(), nil, "", tt.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.stderr) {
			t.Errorf("%q: code %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.stderr)
		}
	}
}
