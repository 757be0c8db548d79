package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// TestWorkDirDefault: the template's working directory is where commands
// start when they name none; a default that is not a directory (or not
// absolute) falls back to the home; a request's own cwd always wins.
func TestWorkDirDefault(t *testing.T) {
	home, srv := t.TempDir(), t.TempDir()
	file := filepath.Join(srv, "f")
	os.WriteFile(file, nil, 0o644)
	u := &account{name: "u", home: home}
	for _, tc := range []struct {
		name, cwd, def, want string
	}{
		{"default", "", srv, srv},
		{"no default", "", "", home},
		{"default missing", "", filepath.Join(srv, "missing"), home},
		{"default is a file", "", file, home},
		{"default relative", "", "srv", home},
		{"request wins", "/", srv, "/"},
		{"request relative to home", ".", srv, home},
	} {
		var cwd *string
		if tc.cwd != "" {
			cwd = &tc.cwd
		}
		got, err := workDir(u, cwd, tc.def)
		if err != nil || got != tc.want {
			t.Errorf("%s: workDir = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	missing := "/does/not/exist"
	if _, err := workDir(u, &missing, srv); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("missing cwd with a default: %v", err)
	}
}
