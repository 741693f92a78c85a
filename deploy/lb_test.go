package deploy

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// haproxyDirectives returns the config's non-comment lines, trimmed.
func haproxyDirectives(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("lb/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// haproxyDuration parses an HAProxy time (default unit ms).
func haproxyDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)(us|ms|s|m|h|d)?$`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("bad haproxy time %q", s)
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
	return time.Duration(n) * unit
}

// TestHAProxyConfigFitsTraffic checks the load balancer against the
// gateway's own timeouts: idle timeouts above the longest wait a gateway
// imposes (poll, relay response, pipe partner), a tunnel timeout for
// WebSockets, /readyz health checks, round robin, nothing that buffers,
// coalesces or pins clients. With haproxy installed it also runs `haproxy -c`.
func TestHAProxyConfigFitsTraffic(t *testing.T) {
	lines := haproxyDirectives(t)
	timeouts := map[string]time.Duration{}
	has := func(prefix string) bool {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return true
			}
		}
		return false
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "timeout" {
			timeouts[f[1]] = haproxyDuration(t, f[2])
		}
	}
	gw := loadGateway(t, "gateway/cluster.yaml")
	longest := max(gw.Megaphone.PollDuration, gw.Relay.ResponseTimeout, gw.Pipe.Timeout, gw.Middleman.RequestTimeout)
	for _, k := range []string{"client", "server"} {
		if timeouts[k] <= longest {
			t.Errorf("timeout %s = %s, must exceed the longest gateway wait %s", k, timeouts[k], longest)
		}
	}
	if timeouts["tunnel"] < time.Minute {
		t.Errorf("timeout tunnel = %s, want >= 1m for WebSockets (pinged every 25 s)", timeouts["tunnel"])
	}
	for _, want := range []string{"balance roundrobin", "option httpchk", "http-check send meth GET uri /readyz", "http-check expect status 200", "retry-on conn-failure"} {
		if !has(want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	for _, bad := range []string{"cookie", "stick", "balance source", "hash-type", "option http-buffer-request", "compression", "http-reuse always"} {
		if has(bad) {
			t.Errorf("haproxy.cfg has %q: no stickiness, no buffering", bad)
		}
	}
	for _, l := range lines {
		if f := strings.Fields(l); f[0] == "retry-on" && !slices.Equal(f[1:], []string{"conn-failure"}) {
			t.Errorf("%q: only connection failures may be retried (writes are not idempotent)", l)
		}
	}
	checkNoDelay(t, lines)
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("SB_REQUIRE_HAPROXY") == "1" { // CI installs it
			t.Fatal("haproxy not installed (SB_REQUIRE_HAPROXY=1): `haproxy -c` not run")
		}
		t.Log("haproxy not installed: `haproxy -c` not run")
		return
	}
	cmd := exec.Command(haproxy, "-c", "-f", "lb/haproxy.cfg")
	env := map[string]string{"SB_LB_BIND": "127.0.0.1:1", "SB_LB_STATS": "127.0.0.1:2",
		"SB_GW1_ADDR": "127.0.0.1:3", "SB_GW2_ADDR": "127.0.0.1:4", "SB_GW3_ADDR": "127.0.0.1:5"}
	cmd.Env = os.Environ()
	for _, k := range haproxyVars(t) {
		if env[k] == "" {
			t.Fatalf("haproxy.cfg reads ${%s}; set it here", k)
		}
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// checkNoDelay requires `option http-no-delay` in the defaults section, so
// it covers the frontend and the backend, and no section that turns it off.
// Without it HAProxy sends partial responses with MSG_MORE and the kernel
// holds a streamed event up to 200 ms (215 ms p50 write→read measured,
// against 6 ms straight to a gateway); integration/lb_latency_test.go
// measures it through a real haproxy.
func checkNoDelay(t *testing.T, lines []string) {
	t.Helper()
	section, inDefaults := "", false
	for _, l := range lines {
		f := strings.Fields(l)
		switch f[0] {
		case "global", "defaults", "frontend", "backend", "listen", "resolvers", "peers", "userlist", "program", "cache", "mailers", "http-errors", "ring":
			section = l
			continue
		}
		switch {
		case l == "option http-no-delay" && strings.HasPrefix(section, "defaults"):
			inDefaults = true
		case len(f) >= 3 && f[0] == "no" && f[1] == "option" && f[2] == "http-no-delay":
			t.Errorf("%s: %q turns coalescing back on for streamed responses", section, l)
		}
	}
	if !inDefaults {
		t.Error("haproxy.cfg lacks `option http-no-delay` in defaults: HAProxy would hold streamed events up to 200 ms to fill packets")
	}
}
