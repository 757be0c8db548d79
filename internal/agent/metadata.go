package agent

import (
	"errors"
	"net/http"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// File metadata, as envd keeps it: user-defined key/value pairs stored as
// extended attributes in the user.e2b. namespace, set by an upload's
// X-Metadata-<key> headers and returned in every EntryInfo. Code in the
// sandbox may set them too (setxattr user.e2b.KEY), and they travel with
// the inode (a rename keeps them).
const (
	metadataHeaderPrefix = "X-Metadata-"
	metadataXattrPrefix  = "user.e2b."
	// metadataMaxKey is the Linux VFS xattr-name limit (255) less the
	// namespace prefix.
	metadataMaxKey = 255 - len(metadataXattrPrefix)
	// metadataMaxTotal bounds a file's metadata (keys with their prefix,
	// plus values) to what fits the filesystem's per-inode xattr space.
	metadataMaxTotal = 4096
)

// uploadMetadata returns the metadata an upload's headers ask for: each
// X-Metadata-<key> header, the key lowercased, the first value if it is
// sent more than once. Keys and values must be printable US-ASCII and fit
// envd's limits (400 otherwise). An upload without such headers gives an
// empty map, which clears a file's metadata.
func uploadMetadata(h http.Header) (map[string]string, error) {
	md := map[string]string{}
	total := 0
	// Sorted, so that the first of two headers differing only in case
	// wins the same way every time.
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if len(name) < len(metadataHeaderPrefix) || !strings.EqualFold(name[:len(metadataHeaderPrefix)], metadataHeaderPrefix) {
			continue
		}
		key := strings.ToLower(name[len(metadataHeaderPrefix):])
		if key == "" {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "metadata header %q has no key", name)
		}
		if _, dup := md[key]; dup || len(h[name]) == 0 {
			continue
		}
		value := h[name][0]
		if !printableASCII(key) || !printableASCII(value) {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "metadata %q: keys and values must be printable US-ASCII", key)
		}
		if len(key) > metadataMaxKey {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "metadata key %q is longer than %d bytes", key, metadataMaxKey)
		}
		total += len(metadataXattrPrefix) + len(key) + len(value)
		if total > metadataMaxTotal {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "metadata is larger than %d bytes (keys with the %q prefix, plus values)", metadataMaxTotal, metadataXattrPrefix)
		}
		md[key] = value
	}
	return md, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// setMetadata replaces the metadata of open file f with md: keys stored
// before and absent from md are removed. A filesystem without user xattrs
// is fine as long as nothing is to be stored there.
func setMetadata(f *os.File, md map[string]string) error {
	fd := int(f.Fd())
	old, err := xattrNames(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) && len(md) == 0 {
			return nil
		}
		return metadataError(f.Name(), err)
	}
	for _, name := range old {
		key, ok := strings.CutPrefix(name, metadataXattrPrefix)
		if !ok {
			continue
		}
		if _, keep := md[key]; keep {
			continue
		}
		if err := unix.Fremovexattr(fd, name); err != nil && !errors.Is(err, unix.ENODATA) {
			return metadataError(f.Name(), err)
		}
	}
	for k, v := range md {
		if err := unix.Fsetxattr(fd, metadataXattrPrefix+k, []byte(v), 0); err != nil {
			return metadataError(f.Name(), err)
		}
	}
	return nil
}

func metadataError(p string, err error) error {
	if errors.Is(err, unix.ENOTSUP) {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "the filesystem of %q does not support file metadata (user extended attributes)", p)
	}
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ERANGE) {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "the metadata does not fit the extended attributes of %q", p)
	}
	return fileError(p, err)
}

// readMetadata returns the metadata of path p (following symlinks), nil when
// it has none or it cannot be read (no permission, no xattr support, gone).
func readMetadata(p string) map[string]string {
	names, err := xattrNames(func(b []byte) (int, error) { return unix.Listxattr(p, b) })
	if err != nil {
		return nil
	}
	var md map[string]string
	for _, name := range names {
		key, ok := strings.CutPrefix(name, metadataXattrPrefix)
		if !ok || key == "" {
			continue
		}
		v, err := xattrValue(p, name)
		if err != nil {
			continue
		}
		if md == nil {
			md = map[string]string{}
		}
		md[key] = v
	}
	return md
}

// xattrNames calls a listxattr-style function until its buffer is big
// enough and splits the NUL-separated answer.
func xattrNames(list func([]byte) (int, error)) ([]string, error) {
	for {
		n, err := list(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		b := make([]byte, n)
		n, err = list(b)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range strings.Split(string(b[:n]), "\x00") {
			if s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
}

func xattrValue(p, name string) (string, error) {
	for {
		n, err := unix.Getxattr(p, name, nil)
		if err != nil {
			return "", err
		}
		b := make([]byte, n)
		n, err = unix.Getxattr(p, name, b)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return "", err
		}
		return string(b[:n]), nil
	}
}
