package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/agent"
)

func loadUpstream(t *testing.T, args ...string) (*agent.AgentUpstream, int, string) {
	t.Helper()
	var cfg agent.AgentUpstream
	var out bytes.Buffer
	l := agent.UpstreamLoader()
	l.Getenv = func(string) string { return "" }
	code, ok := load(l, args, &cfg, cfg.Validate, &out)
	if ok {
		code = 0
	}
	return &cfg, code, out.String()
}

func TestUpstreamFlags(t *testing.T) {
	cfg, code, out := loadUpstream(t, "--nats", "nats://h:4222", "--upstream", "a=http://127.0.0.1:1", "--upstream", "b=https://b.internal:8443/base")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	got := cfg.Targets()
	if len(got) != 2 || got["a"] != "http://127.0.0.1:1" || got["b"] != "https://b.internal:8443/base" || cfg.NATS.URL != "nats://h:4222" {
		t.Fatalf("targets %v, nats %q", got, cfg.NATS.URL)
	}
	cfg, code, out = loadUpstream(t, "--name", "api", "--target", "http://localhost:3000", "--nats-user", "u", "--nats-password", "p")
	if code != 0 || cfg.Targets()["api"] != "http://localhost:3000" || cfg.NATS.User != "u" {
		t.Fatalf("exit %d %s: %v", code, out, cfg.Targets())
	}
}

func TestUpstreamConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(file, []byte("nats:\n  url: nats://x:4222\nupstreams:\n  Api: http://127.0.0.1:3000\n  web.site: http://127.0.0.1:3001\nmax_concurrent: 8\n"), 0o600)
	cfg, code, out := loadUpstream(t, "--config", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if got := cfg.Targets(); len(got) != 2 || got["Api"] != "http://127.0.0.1:3000" || got["web.site"] != "http://127.0.0.1:3001" || cfg.MaxConcurrent != 8 {
		t.Fatalf("targets %v", got)
	}
}

func TestUpstreamBadValues(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(file, []byte("upstreams:\n  a: [1, 2]\n"), 0o600)
	unknown := filepath.Join(t.TempDir(), "unknown.yaml")
	os.WriteFile(unknown, []byte("upstreamz:\n  a: http://x\n"), 0o600)
	cases := []struct {
		args []string
		key  string
	}{
		{[]string{}, "upstreams"},
		{[]string{"--upstream", "a=ftp://x"}, "upstreams"},
		{[]string{"--upstream", "a=not a url"}, "upstreams"},
		{[]string{"--name", "a"}, "name"},
		{[]string{"--target", "http://x"}, "name"},
		{[]string{"--name", "a", "--target", "http://x", "--max-concurrent", "0"}, "max_concurrent"},
		{[]string{"--name", "a", "--target", "http://x", "--shutdown-grace", "soon"}, "shutdown-grace"},
		{[]string{"--name", "a", "--target", "http://x", "--nats", ""}, "nats.url"},
		{[]string{"--name", "a", "--target", "http://x", "--log-level", "loud"}, "log.level"},
		{[]string{"--config", file}, "upstreams"},
		{[]string{"--config", unknown}, "upstreamz"},
	}
	for _, c := range cases {
		_, code, out := loadUpstream(t, c.args...)
		if code != 2 || !strings.Contains(out, c.key) {
			t.Errorf("%v: exit %d, output %q; want 2 naming %q", c.args, code, out, c.key)
		}
	}
}

// TestRunExitCodes runs the command itself with invalid input: it exits 2
// before connecting anywhere.
func TestRunExitCodes(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"upstream"},
		{"upstream", "--upstream", "a=http://x", "extra-arg"},
		{"client"},
		{"client", "--upstream", "a", "--listen", "nowhere"},
		{"client", "--upstream", "a", "--agent-wait", "0s"},
	} {
		var out bytes.Buffer
		if code := run(args, &out); code != 2 {
			t.Errorf("%v: exit %d (%s)", args, code, out.String())
		}
	}
	var out bytes.Buffer
	if code := run([]string{"upstream", "--help"}, &out); code != 0 || !strings.Contains(out.String(), "--upstream") {
		t.Errorf("--help: exit %d %q", code, out.String())
	}
}
