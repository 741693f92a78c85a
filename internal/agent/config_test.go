package agent

import (
	"strings"
	"testing"
)

func TestAgentClientTrustedProxies(t *testing.T) {
	l := ClientLoader()
	l.Getenv = func(string) string { return "" }
	var c AgentClient
	if _, err := l.Load([]string{"--upstream", "api", "--trusted-proxies", "127.0.0.1,10.0.0.0/8"}, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || len(c.TrustedProxies) != 2 {
		t.Fatalf("%v %q", err, c.TrustedProxies)
	}
	var bad AgentClient
	if _, err := l.Load([]string{"--upstream", "api", "--trusted-proxies", "proxy.local"}, &bad); err != nil {
		t.Fatal(err)
	}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "trusted_proxies") {
		t.Fatalf("bad proxy: %v", err)
	}
}
