package agent

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	pb "github.com/sbxdev/sbx/gen/filesystem"
)

// TestFilesMetadata: X-Metadata-* headers become the file's metadata, shown
// in the upload's answer, Stat, ListDir and after a move; an upload without
// them clears it; attributes set in the sandbox show too; bad metadata is
// a 400 that writes nothing.
func TestFilesMetadata(t *testing.T) {
	hc := httpClient(t, "h2c", testToken)
	c := fsClient(t, "h2c")
	dir := filesTempDir(t)
	p := filepath.Join(dir, "m.txt")
	if err := unix.Setxattr(dir, "user.e2b.probe", []byte("x"), 0); err != nil {
		t.Fatalf("the test directory %s does not take user xattrs (%v): run the tests on ext4, xfs, btrfs or tmpfs", dir, err)
	}

	code, out := filesUpload(t, hc, url.Values{"path": {p}}, "application/octet-stream", strings.NewReader("one"),
		"X-Metadata-Owner", "alice", "x-metadata-Build-ID", "42")
	if code != http.StatusOK {
		t.Fatalf("upload: %d %s", code, out)
	}
	var got []fileEntry
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"owner": "alice", "build-id": "42"}
	if len(got) != 1 || !sameMap(got[0].Metadata, want) {
		t.Fatalf("upload answered %+v, want metadata %v", got, want)
	}
	e, err := fsStat(t, c, p, "")
	if err != nil || !sameMap(e.Metadata, want) {
		t.Fatalf("Stat: %v, %v; want metadata %v", e, err, want)
	}
	ls, err := c.ListDir(testContext(t), fsReq(&pb.ListDirRequest{Path: dir, Depth: 1}, ""))
	if err != nil || len(ls.Msg.Entries) != 1 || !sameMap(ls.Msg.Entries[0].Metadata, want) {
		t.Fatalf("ListDir: %v, %v; want one entry with metadata %v", ls, err, want)
	}
	moved := filepath.Join(dir, "moved.txt")
	mv, err := c.Move(testContext(t), fsReq(&pb.MoveRequest{Source: p, Destination: moved}, ""))
	if err != nil || !sameMap(mv.Msg.Entry.Metadata, want) {
		t.Fatalf("Move: %v, %v; want metadata %v", mv, err, want)
	}

	// Set from inside the sandbox, beside the others; other namespaces
	// are not metadata.
	if err := unix.Setxattr(moved, "user.e2b.from-inside", []byte("yes"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(moved, "user.other", []byte("no"), 0); err != nil {
		t.Fatal(err)
	}
	e, _ = fsStat(t, c, moved, "")
	if want := map[string]string{"owner": "alice", "build-id": "42", "from-inside": "yes"}; !sameMap(e.Metadata, want) {
		t.Fatalf("after setxattr: metadata %v, want %v", e.Metadata, want)
	}

	// Overwriting replaces: a key not sent is gone; no headers clear all.
	code, out = filesUpload(t, hc, url.Values{"path": {moved}}, "application/octet-stream", strings.NewReader("two"), "X-Metadata-Owner", "bob")
	if code != http.StatusOK {
		t.Fatalf("overwrite: %d %s", code, out)
	}
	if e, _ = fsStat(t, c, moved, ""); !sameMap(e.Metadata, map[string]string{"owner": "bob"}) {
		t.Fatalf("after overwrite: metadata %v, want owner=bob only", e.Metadata)
	}
	ct, body := filesMultipart(t, moved, "three")
	if code, out = filesUpload(t, hc, nil, ct, body); code != http.StatusOK {
		t.Fatalf("multipart overwrite: %d %s", code, out)
	}
	if e, _ = fsStat(t, c, moved, ""); len(e.Metadata) != 0 {
		t.Fatalf("after an upload without metadata: %v, want none", e.Metadata)
	}
	if v, err := getxattr(moved, "user.other"); err != nil || v != "no" {
		t.Fatalf("user.other = %q, %v: attributes outside user.e2b. must be left alone", v, err)
	}

	// Multipart: every file gets the same metadata.
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	ct, body = filesMultipart(t, a, "A", b, "B")
	if code, out = filesUpload(t, hc, nil, ct, body, "X-Metadata-Batch", "7"); code != http.StatusOK {
		t.Fatalf("multipart with metadata: %d %s", code, out)
	}
	for _, f := range []string{a, b} {
		if e, _ = fsStat(t, c, f, ""); !sameMap(e.Metadata, map[string]string{"batch": "7"}) {
			t.Errorf("%s: metadata %v, want batch=7", f, e.Metadata)
		}
	}

	bad := []struct{ name, key, value string }{
		{"no key", "X-Metadata-", "v"},
		{"non-ASCII value", "X-Metadata-K", "caf\u00e9"},
		{"key too long", "X-Metadata-" + strings.Repeat("k", metadataMaxKey+1), "v"},
		{"too large", "X-Metadata-K", strings.Repeat("v", metadataMaxTotal)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, "bad")
			code, out := filesUpload(t, hc, url.Values{"path": {f}}, "application/octet-stream", strings.NewReader("x"), tc.key, tc.value)
			if code != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", code, out)
			}
			if _, err := os.Stat(f); !os.IsNotExist(err) {
				t.Fatalf("a refused upload wrote %s (%v)", f, err)
			}
		})
	}
}

func getxattr(p, name string) (string, error) {
	b := make([]byte, 256)
	n, err := unix.Getxattr(p, name, b)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
