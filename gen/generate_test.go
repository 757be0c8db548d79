package gen_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates the Go code from proto/ into a
// temporary directory and fails if it differs from what is committed, so
// generated code is never edited by hand or left stale.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Fatal("protoc is not installed: run scripts/setup.sh")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin, out := t.TempDir(), t.TempDir()
	for _, p := range []string{"google.golang.org/protobuf/cmd/protoc-gen-go", "connectrpc.com/connect/cmd/protoc-gen-connect-go"} {
		cmd := exec.Command("go", "build", "-o", bin, p)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", p, err, b)
		}
	}
	cmd := exec.Command("protoc", "-I", "proto",
		"--plugin=protoc-gen-go="+filepath.Join(bin, "protoc-gen-go"), "--go_out="+out, "--go_opt=module=github.com/sbxdev/sbx/gen",
		"--plugin=protoc-gen-connect-go="+filepath.Join(bin, "protoc-gen-connect-go"), "--connect-go_out="+out, "--connect-go_opt=module=github.com/sbxdev/sbx/gen",
		"process/process.proto", "filesystem/filesystem.proto")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	n := 0
	err = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(root, "gen", rel))
		if err != nil {
			t.Errorf("gen/%s is missing: run go generate ./gen", rel)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("gen/%s differs from what proto/ generates: run go generate ./gen", rel)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("generated %d files, want 4", n)
	}
}

// TestProtosMatchTheE2BPackage re-derives proto/ from the e2b npm package's
// embedded descriptors and fails if the committed .proto files differ: the
// wire format sbx speaks is the SDK's, by construction.
func TestProtosMatchTheE2BPackage(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(root, "tests", "e2b-js", "node_modules", "e2b", "dist", "index.js")
	if _, err := os.Stat(bundle); err != nil {
		t.Fatal("the e2b npm package is not installed: run `npm ci` in tests/e2b-js (scripts/test.sh does)")
	}
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./tools/protoextract", "-bundle", bundle, "-out", out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoextract: %v\n%s", err, b)
	}
	for _, f := range []string{"process/process.proto", "filesystem/filesystem.proto"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, "proto", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("proto/%s differs from the e2b package's descriptors: run go generate ./gen", f)
		}
	}
}
