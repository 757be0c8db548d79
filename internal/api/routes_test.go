package api

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sbxdev/sbx/internal/sandbox"
)

// apiDoc is the API document whose route table must list exactly the routes
// the server registers.
var apiDoc = filepath.Join("..", "..", "docs", "api.md")

// registeredRoutes returns the patterns that the Server's routes method
// passes to Handle and HandleFunc, read from this package's source: an
// http.ServeMux cannot list its patterns.
func registeredRoutes(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	found := false
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || fn.Name.Name != "routes" {
				continue
			}
			found = true
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") || len(call.Args) != 2 {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("%s: route pattern is not a string literal; this test cannot check it", fset.Position(call.Pos()))
					return true
				}
				p, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				routes = append(routes, p)
				return true
			})
		}
	}
	if !found || len(routes) == 0 {
		t.Fatal("found no routes method registering patterns; update this test")
	}
	return routes
}

// docRow is a row of the route table: | `METHOD /path` | ...
var docRow = regexp.MustCompile("^\\|\\s*`([A-Z]+ /[^`]*)`\\s*\\|")

// documentedRoutes returns the first cells of the route table under the
// "## Routes" heading of docs/api.md.
func documentedRoutes(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(apiDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var routes []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = strings.TrimSpace(line) == "## Routes"
			continue
		}
		if m := docRow.FindStringSubmatch(line); in && m != nil {
			routes = append(routes, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(routes) == 0 {
		t.Fatalf("%s: no route table under \"## Routes\"", apiDoc)
	}
	return routes
}

// TestRoutesDocumented fails when a registered route is missing from
// docs/api.md's route table or the table lists a route that is not served,
// so nothing unreviewed is exposed and the document stays true.
func TestRoutesDocumented(t *testing.T) {
	registered := map[string]bool{}
	for _, p := range registeredRoutes(t) {
		if p == "/" {
			continue // the not-found fallback, described under Errors
		}
		if registered[p] {
			t.Errorf("route %q registered twice", p)
		}
		registered[p] = true
	}
	documented := map[string]bool{}
	for _, p := range documentedRoutes(t) {
		if documented[p] {
			t.Errorf("%s: route %q listed twice", apiDoc, p)
		}
		documented[p] = true
	}
	for _, p := range slices.Sorted(maps.Keys(registered)) {
		if !documented[p] {
			t.Errorf("route %q is registered in routes() but missing from the route table in %s", p, apiDoc)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(documented)) {
		if !registered[p] {
			t.Errorf("%s documents %q, which routes() does not register", apiDoc, p)
		}
	}
}

// TestDocumentedRoutesServed sends a request for every documented route
// through the real server and checks the mux routes it somewhere other than
// the not-found fallback: the source parse above cannot see a pattern that
// is registered but shadowed or malformed.
func TestDocumentedRoutesServed(t *testing.T) {
	s := newTestServer(t, sandbox.Config{})
	s.SetReady(true)
	for _, p := range documentedRoutes(t) {
		method, path, _ := strings.Cut(p, " ")
		path = strings.ReplaceAll(path, "{id}", "someid")
		w := s.do(t, method, path, "", "")
		if w.Code == 404 && strings.Contains(w.Body.String(), "no route for") {
			t.Errorf("%s: answered by the not-found fallback", p)
		}
	}
	// And the fallback does answer what is not documented.
	if w := s.do(t, "GET", "/v2/nothing", "", ""); w.Code != 404 || !strings.Contains(w.Body.String(), "no route for") {
		t.Errorf("GET /v2/nothing: %d %s, want the not-found fallback", w.Code, w.Body)
	}
}
