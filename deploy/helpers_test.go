package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// yamlDocs decodes every document of a YAML file. Duplicate keys and
// syntax errors fail the test.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// get walks a decoded YAML value along keys (map keys or, for lists,
// nothing: use list()).
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := get(v, keys...).(string)
	return s
}

func list(v any, keys ...string) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

func num(v any, keys ...string) int {
	n, _ := get(v, keys...).(int)
	return n
}

// natsConfVarRE finds `$NAME` variable references outside quotes.
var natsConfVarRE = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)

// natsConfVars lists the environment variables the NATS config files read.
func natsConfVars(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, f := range []string{"nats/nats.conf", "nats/accounts.conf"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "#"); i >= 0 {
				line = line[:i]
			}
			line = regexp.MustCompile(`"[^"]*"`).ReplaceAllString(line, "")
			for _, m := range natsConfVarRE.FindAllStringSubmatch(line, -1) {
				seen[m[1]] = true
			}
		}
	}
	return sortedKeys(seen)
}

// haproxyVars lists the "${NAME}" environment variables haproxy.cfg reads.
func haproxyVars(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("lb/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).FindAllStringSubmatch(line, -1) {
			seen[m[1]] = true
		}
	}
	return sortedKeys(seen)
}

// envExample reads deploy/env.example: the secrets every environment sets.
func envExample(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("env.example")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("env.example: line %q is not NAME=VALUE", line)
		}
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// filesUnder lists the files below dir whose names end in one of exts,
// skipping the local script's state directory.
func filesUnder(t *testing.T, dir string, exts ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".state" {
			return filepath.SkipDir
		}
		for _, e := range exts {
			if !d.IsDir() && strings.HasSuffix(path, e) {
				out = append(out, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// goModVersion returns the version of module in ../go.mod.
func goModVersion(t *testing.T, module string) string {
	t.Helper()
	raw, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == module {
			return f[2]
		}
	}
	t.Fatalf("go.mod has no %s", module)
	return ""
}
