package client

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

func TestDockerignore(t *testing.T) {
	dir := t.TempDir()
	ignore := "# comment\nnode_modules\n*.log\n**/tmp\n/build/out\n!keep.log\ndocs/[a-c]*.md\n"
	files := []string{"Dockerfile", "a.log", "keep.log", "src/x.go", "src/y.log", "node_modules/m/i.js",
		"src/tmp/t", "tmp/u", "build/out/bin", "build/src", "docs/a1.md", "docs/d.md", "nested/node_modules/n"}
	if err := os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte(ignore), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := writeContext(context.Background(), &buf, dir); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			got = append(got, h.Name)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: owner %d:%d sent", h.Name, h.Uid, h.Gid)
		}
	}
	sort.Strings(got)
	// "src/y.log" matches "*.log" only at the top, as in Docker; a
	// pattern without "**" does not reach into subdirectories.
	want := []string{".dockerignore", "Dockerfile", "build/src", "docs/d.md", "keep.log", "nested/node_modules/n", "src/x.go", "src/y.log"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("context has %q\nwant %q", got, want)
	}
}
