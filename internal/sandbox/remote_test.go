package sandbox

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// memRemote is a bucket in memory.
type memRemote struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (r *memRemote) Put(ctx context.Context, key string, body io.Reader, size int64) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[key] = b
	return nil
}

func (r *memRemote) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.m[key]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, "%s not found", key)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (r *memRemote) Exists(ctx context.Context, key string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[key]
	return ok, nil
}

func (r *memRemote) Delete(ctx context.Context, key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, key)
	return nil
}

// TestRemoteTierTrees packs a sandbox's upper layer (shifted owners, a
// whiteout overlayfs made as host root, a symlink) into the bucket and back
// under another shift; a second upload of the same tree sends nothing; a
// damaged blob leaves no tree.
func TestRemoteTierTrees(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (owners, device nodes)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "upper")
	const shift, shift2 = 200000, 300000
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "home/user"), 0o755))
	must(os.WriteFile(filepath.Join(src, "home/user/f"), []byte("kept"), 0o640))
	must(os.Symlink("f", filepath.Join(src, "home/user/l")))
	must(unix.Mknod(filepath.Join(src, "gone"), unix.S_IFCHR|0o600, 0))
	must(os.MkdirAll(filepath.Join(src, ".sbx/run"), 0o755)) // sbx's own, as host root
	for _, p := range []string{"", "home", "home/user", "home/user/l"} {
		must(os.Lchown(filepath.Join(src, p), shift, shift))
	}
	must(os.Lchown(filepath.Join(src, "home/user/f"), shift+1000, shift+1000))
	r := &memRemote{m: map[string][]byte{}}
	tier := &remoteTier{r: r, tmp: filepath.Join(dir, "tmp"), log: slog.New(slog.DiscardHandler)}
	if _, _, err := tier.putTree(ctx, src, shift); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("putTree with host root's .sbx: %v, want it refused", err)
	}
	b, sent, err := tier.putTree(ctx, src, shift, upperSkip...)
	if err != nil || sent != b.Size || sent == 0 {
		t.Fatalf("putTree: %+v, sent %d, %v", b, sent, err)
	}
	if _, again, err := tier.putTree(ctx, src, shift, upperSkip...); err != nil || again != 0 {
		t.Fatalf("second putTree sent %d, %v; want 0", again, err)
	}
	dst := filepath.Join(dir, "dst")
	must(tier.getTree(ctx, b, dst, shift2))
	if got, err := os.ReadFile(filepath.Join(dst, "home/user/f")); err != nil || string(got) != "kept" {
		t.Fatalf("file: %q, %v", got, err)
	}
	var st unix.Stat_t
	must(unix.Lstat(filepath.Join(dst, "home/user/f"), &st))
	if st.Uid != shift2+1000 || st.Mode&0o777 != 0o640 {
		t.Fatalf("file owner %d mode %o, want %d 640", st.Uid, st.Mode&0o777, shift2+1000)
	}
	must(unix.Lstat(filepath.Join(dst, "gone"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 || st.Uid != shift2 {
		t.Fatalf("whiteout: mode %o rdev %d uid %d", st.Mode, st.Rdev, st.Uid)
	}
	if l, err := os.Readlink(filepath.Join(dst, "home/user/l")); err != nil || l != "f" {
		t.Fatalf("symlink: %q, %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(dst, ".sbx")); !os.IsNotExist(err) {
		t.Fatalf(".sbx came along: %v", err)
	}
	// A blob changed in the bucket.
	key := remoteBlobKey(b.Digest)
	r.m[key] = bytes.Replace(r.m[key], []byte("kept"), []byte("lost"), 1)
	bad := filepath.Join(dir, "bad")
	if err := tier.getTree(ctx, b, bad, shift2); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("damaged blob: %v", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatalf("a damaged blob left %s: %v", bad, err)
	}
	if err := tier.getTree(ctx, remoteBlob{Digest: "sha256:nothex", Size: 1}, bad, 0); err == nil {
		t.Fatal("a bad digest in an index was accepted")
	}
}
