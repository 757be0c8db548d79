package build

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
	"github.com/sbxdev/sbx/internal/template"
)

// DefaultMaxContextBytes bounds the file content of an uploaded build
// context.
const DefaultMaxContextBytes int64 = 4 << 30

// ExtractContext unpacks an uploaded build context, a tar archive (plain
// or gzip-compressed), into the directory dir, which exists. The archive
// is untrusted: entries that are absolute, contain "..", or would be
// written through a symlink fail it with errdefs.ErrInvalidArgument (and
// nothing is written outside dir); content beyond max bytes is
// errdefs.ErrTooLarge. Owners are not kept: COPY's --chown decides them.
func ExtractContext(ctx context.Context, r io.Reader, dir string, max int64) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var rd io.Reader = br
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		z, err := gzip.NewReader(br)
		if err != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "build context: bad gzip stream")
		}
		defer z.Close()
		rd = z
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("build context dir: %w", err)
	}
	defer unix.Close(fd)
	if max <= 0 {
		max = DefaultMaxContextBytes
	}
	if err := template.ExtractTar(ctx, fd, rd, template.ExtractOptions{Owner: &[2]int{0, 0}, MaxBytes: max}); err != nil {
		var classed *errdefs.Error
		if errors.As(err, &classed) {
			return fmt.Errorf("build context: %w", err)
		}
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "build context: not a readable tar archive")
	}
	return nil
}

// ReadContextFile reads the file rel (at most 1 MiB, such as the
// Dockerfile) from the context directory dir, never leaving it.
func ReadContextFile(dir, rel string) ([]byte, error) {
	f, err := openBeneath(dir, rel, unix.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s: no such file in the build context", rel)
	}
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%s: %v", rel, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s is not a regular file", rel)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDockerfile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDockerfile {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "%s is larger than %d bytes", rel, maxDockerfile)
	}
	return b, nil
}

// MkdirContext makes a fresh directory for a context under the build's
// work directory.
func MkdirContext(b *Build, name string) (string, error) {
	dir := b.dir + "/" + name
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("build context dir: %w", err)
	}
	return dir, nil
}
