package integration

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/switchboard/switchboard"

const echoPkg = "github.com/labstack/echo/v4"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

func imports(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

// moduleImports lists the packages of this module that pkg imports
// directly, without the module prefix ("internal/subjects").
func moduleImports(t *testing.T, pkg string) []string {
	var out []string
	for _, imp := range imports(t, module+"/"+pkg) {
		if rest, ok := strings.CutPrefix(imp, module+"/"); ok {
			out = append(out, rest)
		}
	}
	return out
}

// The layers of ../shared/ARCHITECTURE.md.
var (
	leaves    = []string{"internal/subjects", "internal/config", "internal/httpx", "internal/natsio", "internal/natsconn", "internal/jsutil", "internal/logging", "internal/buildinfo", "internal/tlstest", "internal/netpoll"}
	protocols = []string{"internal/megaphone", "internal/pipe", "internal/middleman", "internal/relay"}
)

// TestDependencyRules holds the import graph of ARCHITECTURE.md: leaves
// import nothing of the module; protocol imports nothing of it and never
// echo; the four protocols import only leaves and protocol, never each
// other, the gateway, the agent, embedded or echo; embedded imports only
// subjects; only the gateway imports echo, embedded and all four
// protocols; the agent imports only relay and leaves; the mains import
// only their composition root, config, logging and buildinfo; the agent
// binary links none of echo, nats-server, megaphone, pipe, middleman.
func TestDependencyRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	allowOnly := func(pkg string, allowed ...string) {
		t.Helper()
		for _, imp := range moduleImports(t, pkg) {
			if !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s (allowed: %v)", pkg, imp, allowed)
			}
		}
	}
	for _, leaf := range leaves {
		allowOnly(leaf)
	}
	allowOnly("internal/protocol")
	for _, p := range append([]string{"internal/protocol"}, protocols...) {
		if slices.Contains(imports(t, module+"/"+p), echoPkg) {
			t.Errorf("%s imports echo", p)
		}
		if p != "internal/protocol" {
			allowOnly(p, append(slices.Clone(leaves), "internal/protocol")...)
		}
	}
	allowOnly("internal/embedded", "internal/subjects")
	allowOnly("internal/console", append(slices.Clone(leaves), "internal/protocol")...)
	if slices.Contains(imports(t, module+"/internal/console"), echoPkg) {
		t.Errorf("internal/console imports echo")
	}
	allowOnly("internal/agent", append(slices.Clone(leaves), "internal/relay")...)
	allowOnly("cmd/gateway", "internal/gateway", "internal/config", "internal/logging", "internal/buildinfo")
	allowOnly("cmd/agent", "internal/agent", "internal/config", "internal/logging", "internal/buildinfo")

	// Only the gateway imports echo, embedded, and all four protocols.
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imps := f[0], f[1:]
		if pkg == module+"/internal/gateway" || strings.HasPrefix(pkg, module+"/integration") {
			continue
		}
		for _, imp := range imps {
			if imp == echoPkg || imp == module+"/internal/embedded" {
				t.Errorf("%s imports %s: only internal/gateway may", pkg, imp)
			}
		}
		n := 0
		for _, p := range protocols {
			if slices.Contains(imps, module+"/"+p) {
				n++
			}
		}
		if n == len(protocols) {
			t.Errorf("%s imports all four protocols: only internal/gateway may", pkg)
		}
	}

	forbid := func(pkg string, bad ...string) {
		for _, d := range deps(t, pkg) {
			for _, b := range bad {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s links %s", pkg, d)
				}
			}
		}
	}
	forbid(module+"/cmd/agent", module+"/internal/gateway", echoPkg, "github.com/nats-io/nats-server/v2",
		module+"/internal/megaphone", module+"/internal/pipe", module+"/internal/middleman")
	for _, imp := range imports(t, module+"/internal/subjects") {
		if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
			t.Errorf("internal/subjects imports non-stdlib %s", imp)
		}
	}
}

// TestSubjectsBuiltInOnePlace fails when code outside internal/subjects
// that uses NATS builds a subject by hand: a string concatenation with a literal that
// starts or ends with a token separator ("." + x, "sb." + x, x + ".in"),
// or strings.Join with ".". Subjects come from subjects' builders only.
func TestSubjectsBuiltInOnePlace(t *testing.T) {
	root := ".."
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel, _ := filepath.Rel(root, path); rel == filepath.Join("internal", "subjects") || path != root && strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		if !usesNATS(f) {
			return nil // dotted names that are not subjects (config keys, addresses)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch e := n.(type) {
			case *ast.BinaryExpr:
				if e.Op == token.ADD && (subjectPiece(e.X) || subjectPiece(e.Y)) {
					t.Errorf("%s: subject concatenated by hand; use an internal/subjects builder", fset.Position(e.Pos()))
				}
			case *ast.CallExpr:
				if sel, ok := e.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Join" && len(e.Args) == 2 {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "strings" && literal(e.Args[1]) == "." {
						t.Errorf("%s: strings.Join with \".\" builds a subject; use an internal/subjects builder", fset.Position(e.Pos()))
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// usesNATS reports whether f imports a NATS client package: only such
// code publishes or subscribes.
func usesNATS(f *ast.File) bool {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, "github.com/nats-io/nats.go") {
			return true
		}
	}
	return false
}

// subjectPiece reports whether e is a string literal that looks like a
// piece of a subject: "." alone, or a token and a separator ("sb.", ".in").
func subjectPiece(e ast.Expr) bool {
	s := literal(e)
	if s == "" || strings.ContainsAny(s, " /:%\n") {
		return false
	}
	return s == "." || strings.HasSuffix(s, ".") || strings.HasPrefix(s, ".") && len(s) > 1 && s[1] != '.'
}

func literal(e ast.Expr) string {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil {
		return ""
	}
	return s
}
