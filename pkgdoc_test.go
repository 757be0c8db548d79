// Package sbx_test holds meta-tests over the whole module, such as the check
// that every package has a doc comment.
package sbx_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs fails for every package of the module, other than commands
// and generated code, that has no package doc comment: the doc is where a
// reader learns what a package holds and why it exists.
func TestPackageDocs(t *testing.T) {
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
			name == "node_modules" || name == "testdata" || name == "vendor" || path == "gen") {
			return filepath.SkipDir
		}
		if path != "." {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		if msg := checkPackageDoc(t, path); msg != "" {
			t.Error(msg)
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("walked only %d directories; is the test running at the module root?", checked)
	}
}

// checkPackageDoc returns why the package in dir lacks a doc, or "" when it
// has one or needs none (no Go files, a command, generated code). A package
// has a doc when a package clause of one of its non-test files carries one;
// a directory of test files only may carry it in a test file.
func checkPackageDoc(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files, tests []*ast.File
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		// ParseComments with PackageClauseOnly keeps the package doc and
		// the comments above it, which is all this needs.
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if ignored(f) {
			continue
		}
		if strings.HasSuffix(e.Name(), "_test.go") {
			tests = append(tests, f)
		} else {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		files = tests
	}
	if len(files) == 0 {
		return ""
	}
	generated := true
	for _, f := range files {
		if f.Name.Name == "main" {
			return ""
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			return ""
		}
		generated = generated && ast.IsGenerated(f)
	}
	if generated {
		return ""
	}
	return dir + ": package " + files[0].Name.Name + " has no package doc comment (add one to a package clause, or a doc.go)"
}

// ignored reports whether f is excluded from every build by a
// //go:build ignore line.
func ignored(f *ast.File) bool {
	for _, cg := range f.Comments {
		if cg.Pos() > f.Package {
			break
		}
		for _, c := range cg.List {
			if strings.HasPrefix(c.Text, "//go:build") && strings.Contains(c.Text, "ignore") {
				return true
			}
		}
	}
	return false
}
