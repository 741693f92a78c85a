package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// forwardingHeaders are the headers a client may forge to pass for
// someone else.
var forwardingHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix", "Forwarded", "X-Real-Ip"}

// echoForwarding starts an upstream that answers with the forwarding
// headers it received, as a JSON object of comma-joined values.
func echoForwarding(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := map[string]string{}
		for _, k := range forwardingHeaders {
			if v := r.Header.Values(k); len(v) > 0 {
				out[k] = strings.Join(v, ", ")
			}
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// startUpstreamAgent starts `agent upstream` serving name → target.
func startUpstreamAgent(t *testing.T, natsURL, name, target string) {
	t.Helper()
	l := agent.UpstreamLoader()
	l.Getenv = func(string) string { return "" }
	var c agent.AgentUpstream
	if _, err := l.Load([]string{"--nats-url", natsURL, "--name", name, "--target", target}, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := agent.StartUpstream(ctx, &c, harness.Logger(t).With("agent", "upstream"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = u.Shutdown(sctx)
	})
}

// forwarded sends GET url with the forged forwarding headers and returns
// what the upstream saw.
func forwarded(t *testing.T, url string) map[string]string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Add("X-Forwarded-For", "10.9.9.9")
	req.Header.Add("X-Forwarded-For", "10.8.8.8")
	req.Header.Set("X-Forwarded-Host", "admin.internal")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Prefix", "/admin")
	req.Header.Set("Forwarded", "for=10.9.9.9;proto=https")
	req.Header.Set("X-Real-Ip", "10.9.9.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var seen map[string]string
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &seen) != nil {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return seen
}

// TestRelayForwardedHeaders: through the gateway's /relay ingress, a client
// that is not a trusted proxy cannot choose X-Forwarded-*; a trusted
// proxy's are kept and extended.
func TestRelayForwardedHeaders(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	startUpstreamAgent(t, srv.URL(), "fwd", echoForwarding(t))
	gws := map[string]*harness.Gateway{}
	for label, proxies := range map[string][]string{"untrusted": nil, "other proxy": {"10.0.0.0/8"}, "trusted": {"192.0.2.0/24", "127.0.0.1"}} {
		cfg := harness.Config(t)
		cfg.NATS.URL = srv.URL()
		cfg.HTTP.TrustedProxies = proxies
		gws[label] = harness.Start(t, cfg)
	}
	for _, label := range []string{"untrusted", "other proxy"} {
		gw := gws[label]
		seen := forwarded(t, gw.URL()+"/relay/fwd/x")
		want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": gw.Addr(), "X-Forwarded-Proto": "http"}
		if !equalMaps(seen, want) {
			t.Errorf("%s peer: upstream saw %v, want %v", label, seen, want)
		}
	}
	seen := forwarded(t, gws["trusted"].URL()+"/relay/fwd/x")
	want := map[string]string{"X-Forwarded-For": "10.9.9.9, 10.8.8.8, 127.0.0.1", "X-Forwarded-Host": "admin.internal", "X-Forwarded-Proto": "https",
		"X-Forwarded-Prefix": "/admin", "Forwarded": "for=10.9.9.9;proto=https", "X-Real-Ip": "10.9.9.9"}
	if !equalMaps(seen, want) {
		t.Errorf("trusted proxy: upstream saw %v, want %v", seen, want)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRelayLongUpstreamNames: an upstream name of any length is 400
// BAD_REQUEST (or net/http's own 431) before any NATS call, and the
// gateway serves on.
func TestRelayLongUpstreamNames(t *testing.T) {
	gw := harness.StartEmbedded(t, func(c *gateway.Config) { c.Relay.APIKeys = map[string]string{"locked": "k"} })
	var names []string
	for _, n := range []int{257, 1 << 10, 5 << 10, 70 << 10} {
		names = append(names, strings.Repeat("u", n))
	}
	names = append(names, strings.Repeat("%2E", 1400), strings.Repeat("%C3%A9", 129))
	for _, name := range names {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			req, _ := http.NewRequest(method, gw.URL()+"/relay/"+name+"/some/path?q=1", strings.NewReader("body"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %d B: %v", method, len(name), err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge {
				continue
			}
			var e struct{ Code, Message string }
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Code != "BAD_REQUEST" || !strings.Contains(e.Message, "256") {
				t.Errorf("%s /relay/%.20s… (%d B): %d %.200s", method, name, len(name), resp.StatusCode, body)
			}
		}
	}
	harness.Smoke(t, gw.URL())
}
