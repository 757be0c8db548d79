package e2e

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbxdev/sbx/client"
	"github.com/sbxdev/sbx/tests/harness"
)

// TestCLIVolume drives `sbx volume create|ls|rm|cp` against a real server:
// files and trees both ways, progress for a big copy, what a sandbox sees,
// and the errors of a mounted or unknown volume.
func TestCLIVolume(t *testing.T) {
	srv := harness.Start(t)
	ctx := ctxFor(t, 5*time.Minute)
	id := strings.TrimSpace(cliOK(t, ctx, srv, "volume", "create", "clivol", "--size-mb", "64"))
	if len(id) != 20 {
		t.Fatalf("volume create printed %q, want an ID", id)
	}
	var vols []client.Volume
	decodeStrict(t, cliOK(t, ctx, srv, "volume", "ls", "--json"), &vols)
	if len(vols) != 1 || vols[0].ID != id || vols[0].Name != "clivol" || vols[0].SizeMB != 64 {
		t.Fatalf("volume ls --json: %+v", vols)
	}
	if out := cliOK(t, ctx, srv, "volume", "ls"); !strings.Contains(out, "clivol") || !strings.Contains(out, "64 MiB") {
		t.Fatalf("volume ls: %q", out)
	}

	// A tree up, with a file big enough for progress.
	src := t.TempDir()
	big := make([]byte, 12<<20)
	rand.Read(big)
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"a.txt": []byte("alpha"), "sub/big.bin": big} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	_, stderr, code := srv.CLI(ctx, nil, "volume", "cp", src, "clivol:/tree")
	if code != 0 {
		t.Fatalf("volume cp up: %d %s", code, stderr)
	}
	if !strings.Contains(stderr, "MiB/s") {
		t.Errorf("no progress for a 12 MiB copy: %q", stderr)
	}
	// ... seen by a sandbox that mounts the volume.
	sbID := strings.TrimSpace(cliOK(t, ctx, srv, "create", "--volume", "clivol:/vol"))
	sb, err := srv.Client.ConnectSandbox(ctx, sbID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, ctx, sb, "cat /vol/tree/a.txt; stat -c %a /vol/tree/a.txt; wc -c < /vol/tree/sub/big.bin", nil); res.Stdout != "alpha640\n12582912\n" {
		t.Fatalf("sandbox sees %q", res.Stdout)
	}
	mustRun(t, ctx, sb, "echo -n from-sandbox > /vol/tree/sub/made.txt", nil)

	// A file and the tree back down; a file to stdout.
	if out := cliOK(t, ctx, srv, "volume", "cp", id+":/tree/a.txt", "-"); out != "alpha" {
		t.Fatalf("cp to stdout: %q", out)
	}
	dst := filepath.Join(t.TempDir(), "back")
	cliOK(t, ctx, srv, "volume", "cp", "clivol:/tree", dst)
	got, err := os.ReadFile(filepath.Join(dst, "sub", "big.bin"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big.bin came back different (%d bytes, %v)", len(got), err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "sub", "made.txt")); string(b) != "from-sandbox" {
		t.Fatalf("made.txt: %q", b)
	}

	// Errors: a mounted volume, an unknown one, a bad name, bad usage.
	if _, stderr, code := srv.CLI(ctx, nil, "volume", "rm", "clivol"); code == 0 || !strings.Contains(stderr, "mounted") {
		t.Fatalf("rm of a mounted volume: %d %q", code, stderr)
	}
	if _, stderr, code := srv.CLI(ctx, nil, "volume", "cp", "nosuch:/x", "-"); code == 0 || !strings.Contains(stderr, "not found") {
		t.Fatalf("cp from an unknown volume: %d %q", code, stderr)
	}
	if _, stderr, code := srv.CLI(ctx, nil, "volume", "create", "bad/name"); code == 0 || !strings.Contains(stderr, "invalid") {
		t.Fatalf("create with a bad name: %d %q", code, stderr)
	}
	if _, _, code := srv.CLI(ctx, nil, "volume", "cp", "a", "b"); code != 2 {
		t.Fatalf("cp with no volume side: exit %d, want 2 (usage)", code)
	}
	if _, stderr, code := srv.CLI(ctx, nil, "volume", "cp", src+"/a.txt", "clivol:/../x"); code == 0 || !strings.Contains(stderr, "..") {
		t.Fatalf("cp with traversal: %d %q", code, stderr)
	}
	noTrace(t, stderr)
	if err := srv.Client.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	cliOK(t, ctx, srv, "volume", "rm", "clivol")
	if out := cliOK(t, ctx, srv, "volume", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("after rm: %q", out)
	}
}
