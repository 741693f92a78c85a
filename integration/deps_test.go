package integration

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/switchboard/switchboard"

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

// TestDependencyRules proves the architecture: dependencies point inward,
// the gateway and the agent never import each other, the agent binary does
// not link echo, and internal/subjects uses only the standard library.
func TestDependencyRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	forbid := func(pkg string, bad ...string) {
		for _, d := range deps(t, pkg) {
			for _, b := range bad {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
	forbid(module+"/internal/gateway", module+"/internal/agent")
	forbid(module+"/internal/agent", module+"/internal/gateway", "github.com/labstack/echo/v4")
	forbid(module+"/cmd/agent", module+"/internal/gateway", "github.com/labstack/echo/v4", "github.com/nats-io/nats-server/v2")
	forbid(module+"/internal/relay", module+"/internal/gateway", module+"/internal/agent", "github.com/labstack/echo/v4")
	for _, imp := range imports(t, module+"/internal/subjects") {
		if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
			t.Errorf("internal/subjects imports non-stdlib %s", imp)
		}
	}
	for _, pkg := range []string{module + "/internal/gateway", module + "/internal/agent"} {
		for _, imp := range imports(t, pkg) {
			if strings.HasPrefix(imp, module+"/cmd") {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
}
