package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestClientForwardedHeaders: `agent client` replaces the forwarding
// headers of a peer that is not in trusted_proxies and keeps a trusted
// proxy's.
func TestClientForwardedHeaders(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"for": strings.Join(r.Header.Values("X-Forwarded-For"), ", "), "host": r.Header.Get("X-Forwarded-Host"),
			"proto": r.Header.Get("X-Forwarded-Proto"), "forwarded": r.Header.Get("Forwarded"),
		})
	}))
	t.Cleanup(upstream.Close)
	startUpstream(t, srv.URL(), upstream.URL)
	cases := []struct {
		proxies string
		want    map[string]string
	}{
		{"", map[string]string{"for": "127.0.0.1", "proto": "http", "forwarded": ""}},
		{"10.0.0.0/8", map[string]string{"for": "127.0.0.1", "proto": "http", "forwarded": ""}},
		{"127.0.0.0/8", map[string]string{"for": "10.9.9.9, 127.0.0.1", "host": "admin.internal", "proto": "https", "forwarded": "for=10.9.9.9"}},
	}
	for _, c := range cases {
		addr := startClient(t, srv.URL(), c.proxies)
		if c.want["host"] == "" {
			c.want["host"] = addr
		}
		req, _ := http.NewRequest("GET", "http://"+addr+"/x", nil)
		req.Header.Set("X-Forwarded-For", "10.9.9.9")
		req.Header.Set("X-Forwarded-Host", "admin.internal")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("Forwarded", "for=10.9.9.9")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var seen map[string]string
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &seen) != nil {
			t.Fatalf("trusted_proxies %q: %d %s", c.proxies, resp.StatusCode, body)
		}
		for k, v := range c.want {
			if seen[k] != v {
				t.Errorf("trusted_proxies %q: upstream saw %s = %q, want %q", c.proxies, k, seen[k], v)
			}
		}
	}
}

func startUpstream(t *testing.T, natsURL, target string) {
	t.Helper()
	var c agent.AgentUpstream
	load(t, agent.UpstreamLoader(), []string{"--nats-url", natsURL, "--name", "api", "--target", target}, &c, c.Validate)
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

// startClient starts `agent client` for upstream api and returns its
// address.
func startClient(t *testing.T, natsURL, proxies string) string {
	t.Helper()
	var c agent.AgentClient
	load(t, agent.ClientLoader(), []string{"--nats-url", natsURL, "--listen", "127.0.0.1:0", "--upstream", "api", "--trusted-proxies", proxies}, &c, c.Validate)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := agent.StartClient(ctx, &c, harness.Logger(t).With("agent", "client"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cl.Shutdown(sctx)
	})
	return cl.Addr()
}

func load(t *testing.T, l *config.Loader, args []string, out any, validate func() error) {
	t.Helper()
	l.Getenv = func(string) string { return "" }
	if _, err := l.Load(args, out); err != nil {
		t.Fatal(err)
	}
	if err := validate(); err != nil {
		t.Fatal(err)
	}
}
