package integration

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
)

// agentConfig returns the default `agent upstream` config for natsURL
// serving upstreams (name → target URL).
func agentConfig(t testing.TB, natsURL string, upstreams map[string]string) *agent.AgentUpstream {
	t.Helper()
	l := agent.UpstreamLoader()
	l.Getenv = func(string) string { return "" }
	var c agent.AgentUpstream
	if _, err := l.Load(nil, &c); err != nil {
		t.Fatalf("agent config: %v", err)
	}
	c.NATS.URL = natsURL
	c.Upstreams = upstreams
	c.Shutdown.Grace = 10 * time.Second
	if err := c.Validate(); err != nil {
		t.Fatalf("agent config: %v", err)
	}
	return &c
}

// startAgent starts an in-process `agent upstream` and shuts it down
// gracefully at the end of the test.
func startAgent(t testing.TB, cfg *agent.AgentUpstream) *agent.Upstream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := agent.StartUpstream(ctx, cfg, harness.Logger(t).With("agent", "upstream"))
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = u.Shutdown(sctx)
	})
	return u
}

// relayConfig shortens the relay's waits for tests.
func relayConfig(c *gateway.Config) {
	c.Relay.AgentWait = 2 * time.Second
	c.Relay.AckTimeout = 2 * time.Second
	c.Relay.ResponseTimeout = 10 * time.Second
}

type result struct {
	status int
	header http.Header
	body   string
}

func do(t testing.TB, method, url string, body io.Reader, hdr map[string]string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return result{resp.StatusCode, resp.Header, string(b)}
}

func wantCode(t testing.TB, r result, status int, code string) {
	t.Helper()
	if r.status != status || !strings.Contains(r.body, `"code":"`+code+`"`) {
		t.Fatalf("got %d %q, want %d %s", r.status, r.body, status, code)
	}
}
