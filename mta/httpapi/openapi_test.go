package httpapi

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// openAPIDoc is the part of the document the tests read.
type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

func loadDoc(t *testing.T) openAPIDoc {
	t.Helper()
	var d openAPIDoc
	if err := json.Unmarshal(OpenAPI, &d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return d
}

var methods = []string{"get", "post", "put", "patch", "delete", "head", "options"}

// docRoutes are the document's operations as "METHOD /path", with path
// parameters written "{}".
func (d openAPIDoc) routes() map[string]bool {
	out := map[string]bool{}
	for p, item := range d.Paths {
		for m := range item {
			if slices.Contains(methods, m) {
				out[strings.ToUpper(m)+" "+normPath(p)] = true
			}
		}
	}
	return out
}

var paramRE = regexp.MustCompile(`\{[^}]*\}`)

// normPath writes every path parameter as "{}" and drops net/http's "{$}".
func normPath(p string) string {
	p = strings.ReplaceAll(p, "{$}", "")
	return paramRE.ReplaceAllString(p, "{}")
}

// servedPatterns reads the route patterns registered in the packages whose
// handlers the admin listener (and the unsubscribe listener) serve: every
// Handle, HandleFunc or api (the dashboard's helper) call whose first
// argument is a pattern. A pattern built as "GET /dashboard/"+p counts as
// "GET /dashboard/{}".
func servedPatterns(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{"..", "../../dashboard", "../../policy/suppress"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		fset := token.NewFileSet()
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) < 2 {
					return true
				}
				var name string
				switch fn := call.Fun.(type) {
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				case *ast.Ident:
					name = fn.Name
				}
				if name != "Handle" && name != "HandleFunc" && name != "api" {
					return true
				}
				if p, ok := patternOf(call.Args[0]); ok {
					out = append(out, p)
				}
				return true
			})
		}
	}
	return out
}

var patternRE = regexp.MustCompile(`^((GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) )?/\S*$`)

func patternOf(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil && patternRE.MatchString(s)
	case *ast.BinaryExpr:
		left, ok := patternOf(e.X)
		if !ok || e.Op != token.ADD {
			return "", false
		}
		return left + "{}", true
	}
	return "", false
}

// Every route the daemon registers is in the OpenAPI document, and every
// operation of the document is a route the daemon registers.
func TestOpenAPIComplete(t *testing.T) {
	d := loadDoc(t)
	if !strings.HasPrefix(d.OpenAPI, "3.1") {
		t.Errorf("openapi %q, want 3.1.x", d.OpenAPI)
	}
	doc := d.routes()
	served := map[string]bool{} // "METHOD /path"
	var mounts []string         // method-less patterns: every method of a path or a subtree
	for _, rt := range newWorld(t).api.Routes() {
		served[rt.Method+" "+normPath(rt.Path)] = true
	}
	scanned := servedPatterns(t)
	if len(scanned) < 30 {
		t.Fatalf("found only %d route patterns in the daemon's sources: %q", len(scanned), scanned)
	}
	for _, p := range scanned {
		if m, path, ok := strings.Cut(p, " "); ok {
			served[m+" "+normPath(path)] = true
		} else {
			mounts = append(mounts, normPath(p))
		}
	}

	var missing []string
	for r := range served {
		if !doc[r] {
			missing = append(missing, r)
		}
	}
	for _, m := range mounts {
		found := false
		for r := range doc {
			_, path, _ := strings.Cut(r, " ")
			if path == m || (strings.HasSuffix(m, "/") && strings.HasPrefix(path, m)) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, "* "+m)
		}
	}
	sort.Strings(missing)
	for _, r := range missing {
		t.Errorf("served but not in openapi.json: %s", r)
	}

	var extra []string
	for r := range doc {
		if served[r] {
			continue
		}
		_, path, _ := strings.Cut(r, " ")
		if slices.Contains(mounts, path) && !strings.HasSuffix(path, "/") {
			continue // a method-less pattern serves every method of its path
		}
		extra = append(extra, r)
	}
	sort.Strings(extra)
	for _, r := range extra {
		t.Errorf("in openapi.json but not served: %s", r)
	}
}

// The document states who may call each of this package's operations, and
// says it right.
func TestOpenAPIAccess(t *testing.T) {
	d := loadDoc(t)
	for _, rt := range newWorld(t).api.Routes() {
		raw, ok := d.Paths[rt.Path][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("%s not documented", rt.Pattern())
			continue
		}
		var op struct {
			Access    string            `json:"x-kiln-access"`
			Responses map[string]any    `json:"responses"`
			Security  []map[string]any  `json:"security"`
			Params    []json.RawMessage `json:"parameters"`
		}
		json.Unmarshal(raw, &op)
		if op.Access != string(rt.Access) {
			t.Errorf("%s: x-kiln-access %q, served as %q", rt.Pattern(), op.Access, rt.Access)
		}
		if rt.Access != AccessPublic && op.Responses["401"] == nil {
			t.Errorf("%s: no 401 documented", rt.Pattern())
		}
	}
	// Every operation says who may call it.
	for p, item := range d.Paths {
		for m, raw := range item {
			if !slices.Contains(methods, m) {
				continue
			}
			var op struct {
				Access string `json:"x-kiln-access"`
			}
			json.Unmarshal(raw, &op)
			if !slices.Contains([]string{"public", "account", "admin", "session"}, op.Access) {
				t.Errorf("%s %s: x-kiln-access %q", m, p, op.Access)
			}
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	w := newWorld(t)
	r := w.do("GET", "/api/v1/openapi.json", "", nil)
	expectStatus(t, r, 200)
	if r.header.Get("Content-Type") != "application/json" || string(r.body) != string(OpenAPI) {
		t.Errorf("served %q, %d bytes", r.header.Get("Content-Type"), len(r.body))
	}
}

// The document is valid OpenAPI 3.1, by an independent validator where one
// is installed (python3-openapi-spec-validator).
func TestOpenAPIValid(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	if exec.Command(py, "-c", "import openapi_spec_validator").Run() != nil {
		t.Skip("openapi-spec-validator is not installed")
	}
	f := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(f, OpenAPI, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", `import json, sys
from openapi_spec_validator import validate
validate(json.load(open(sys.argv[1])))`, f).CombinedOutput()
	if err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI: %v\n%s", err, out)
	}
}
