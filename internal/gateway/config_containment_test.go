package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/megaphone"
)

func TestContainmentDefaults(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.BodyTimeout != 30*time.Second || len(c.HTTP.TrustedProxies) != 0 || c.Embedded.AllowAnonymous {
		t.Fatalf("defaults: body_timeout %s, trusted_proxies %q, allow_anonymous %v", c.HTTP.BodyTimeout, c.HTTP.TrustedProxies, c.Embedded.AllowAnonymous)
	}
	c, err = load(t, map[string]string{"SWITCHBOARD_HTTP_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,::1"}, "--http-body-timeout", "0")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.BodyTimeout != 0 || len(c.HTTP.TrustedProxies) != 3 {
		t.Fatalf("set: %s %q", c.HTTP.BodyTimeout, c.HTTP.TrustedProxies)
	}
}

// TestEmbeddedExposure: an embedded server reachable from other machines
// without auth is refused unless explicitly allowed.
func TestEmbeddedExposure(t *testing.T) {
	agents := "embedded:\n  agents:\n    - user: a\n      password: p\n      upstreams: [x]\n"
	cases := []struct {
		listen string
		file   string
		args   []string
		ok     bool
	}{
		{listen: "127.0.0.1:4222", ok: true},
		{listen: "127.0.0.2:4222", ok: true},
		{listen: "localhost:4222", ok: true},
		{listen: "[::1]:4222", ok: true},
		{listen: "-1", ok: true},
		{listen: ":0", ok: true}, // random port on 127.0.0.1
		{listen: "0.0.0.0:4222"},
		{listen: ":4222"},
		{listen: "[::]:4222"},
		{listen: "0.0.0.0:0"},
		{listen: "192.0.2.7:4222"},
		{listen: "nats.example:4222"},
		{listen: "0.0.0.0:4222", file: agents, ok: true},
		{listen: ":4222", args: []string{"--embedded-allow-anonymous"}, ok: true},
		{listen: "0.0.0.0:4222", args: []string{"--nats-url", "nats://n:4222"}, ok: true}, // no embedded server
	}
	for _, tc := range cases {
		args := append([]string{"--embedded-listen", tc.listen}, tc.args...)
		if tc.file != "" {
			args = append(args, "--config", writeFile(t, tc.file))
		}
		_, err := load(t, nil, args...)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s %v: %v", tc.listen, tc.args, err)
		case !tc.ok && err == nil:
			t.Errorf("%s %v: accepted", tc.listen, tc.args)
		case !tc.ok:
			msg := err.Error()
			for _, key := range []string{"embedded.listen", "embedded.agents", "embedded.allow_anonymous"} {
				if !strings.Contains(msg, key) {
					t.Errorf("%s: message %q does not name %s", tc.listen, msg, key)
				}
			}
		}
	}
}

func TestContainmentBadValues(t *testing.T) {
	cases := []struct {
		args []string
		key  string
	}{
		{[]string{"--http-body-timeout", "-1s"}, "http.body_timeout"},
		{[]string{"--http-trusted-proxies", "10.0.0.0/8,not-an-ip"}, "http.trusted_proxies"},
		{[]string{"--http-trusted-proxies", "10.0.0.0/33"}, "http.trusted_proxies"},
		{[]string{"--megaphone-agent", strings.Repeat("a", megaphone.MaxAgentLen+1)}, "megaphone.agent"},
	}
	for _, tc := range cases {
		_, err := load(t, nil, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.key) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line naming %s", tc.args, err, tc.key)
		}
	}
	if _, err := load(t, nil, "--megaphone-agent", strings.Repeat("a", megaphone.MaxAgentLen)); err != nil {
		t.Errorf("agent of %d bytes: %v", megaphone.MaxAgentLen, err)
	}
}
