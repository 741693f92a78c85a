package gateway

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEListsEveryKey keeps the README's configuration table true: every
// gateway key appears with its flag, and no row names a key that is gone.
func TestREADMEListsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	inTable := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "| file key | flag |") {
			inTable = true
			continue
		}
		if strings.TrimSpace(line) == "" {
			inTable = false
		}
		if !inTable || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			continue
		}
		rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = cells[2]
	}
	keys := map[string]bool{}
	for _, k := range Keys() {
		keys[k.Name] = true
		row, ok := rows[k.Name]
		if !ok {
			t.Errorf("README has no row for key %q", k.Name)
			continue
		}
		if !k.FileOnly() && !strings.Contains(row, "`--"+k.FlagName()+"`") {
			t.Errorf("README row of %q does not show --%s", k.Name, k.FlagName())
		}
		for _, a := range k.Aliases {
			if !strings.Contains(row, "`--"+a+"`") {
				t.Errorf("README row of %q does not show alias --%s", k.Name, a)
			}
		}
	}
	for name := range rows {
		if !keys[name] {
			t.Errorf("README lists unknown key %q", name)
		}
	}
}
