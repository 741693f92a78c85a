package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// closedURL returns an http URL nothing listens on.
func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestRelayUnreachableTarget(t *testing.T) {
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"down": closedURL(t)}))
	r := do(t, "POST", gw.URL()+"/relay/down/x", strings.NewReader("body"), nil)
	wantCode(t, r, 502, "UPSTREAM_UNREACHABLE")
	if r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}
}

func TestRelayNoAgent(t *testing.T) {
	wait := 400 * time.Millisecond
	gw := harness.StartEmbedded(t, func(c *gateway.Config) { c.Relay.AgentWait = wait })
	start := time.Now()
	wantCode(t, do(t, "GET", gw.URL()+"/relay/nobody/x", nil, nil), 503, "NO_AGENT")
	if d := time.Since(start); d < wait || d > wait+3*time.Second {
		t.Fatalf("503 after %s, want about %s", d, wait)
	}
}

// TestRelayAgentAppearsWhileWaiting proves a request waits for an agent
// that comes up within the agent wait.
func TestRelayAgentAppearsWhileWaiting(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, func(c *gateway.Config) { c.Relay.AgentWait = 20 * time.Second })
	got := make(chan result, 1)
	go func() { got <- do(t, "GET", gw.URL()+"/relay/late/x", nil, nil) }()
	natstest.Eventually(t, 10*time.Second, func() error { // the request is waiting for an agent
		if _, body := get(t, gw.URL()+"/metrics"); !strings.Contains(body, `switchboard_open_streams{kind="relay"} 1`) {
			return fmt.Errorf("request not waiting yet")
		}
		return nil
	})
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"late": up.URL}))
	select {
	case r := <-got:
		if r.status != 200 {
			t.Fatalf("got %d %q", r.status, r.body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("request did not find the late agent")
	}
}

// TestRelayResponseTimeout proves a slow upstream gets 504 after the
// response timeout and that its request is cancelled.
func TestRelayResponseTimeout(t *testing.T) {
	canceled := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(canceled)
		case <-time.After(20 * time.Second):
		}
	}))
	defer up.Close()
	gw := harness.StartEmbedded(t, func(c *gateway.Config) { c.Relay.ResponseTimeout = 500 * time.Millisecond })
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"slow": up.URL}))
	start := time.Now()
	wantCode(t, do(t, "GET", gw.URL()+"/relay/slow/x", nil, nil), 504, "TIMEOUT")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("504 after %s", d)
	}
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("upstream request not cancelled after the timeout")
	}
}

func TestRelayBadInput(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"api": up.URL}))
	if r := do(t, "GET", gw.URL()+"/relay/", nil, nil); r.status != 404 && r.status != 400 {
		t.Fatalf("/relay/ = %d %q", r.status, r.body)
	}
	// A large request head is relayed; one larger than a NATS message is
	// refused, not crashed on.
	for size, want := range map[int]int{900 << 10: 200, 1045000: 400} {
		req, _ := http.NewRequest("GET", gw.URL()+"/relay/api/big", nil)
		req.Header.Set("X-Big", strings.Repeat("x", size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("header of %d bytes = %d, want %d", size, resp.StatusCode, want)
		}
	}
	// The relay still works afterwards.
	if r := do(t, "GET", gw.URL()+"/relay/api/ok", nil, nil); r.status != 200 {
		t.Fatalf("after bad input: %d", r.status)
	}
}

func TestRelayAPIKeys(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, func(c *gateway.Config) {
		relayConfig(c)
		c.Relay.APIKeys = map[string]string{"secured": "k3y"}
	})
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"secured": up.URL, "open": up.URL}))
	for _, auth := range []string{"", "Bearer wrong", "Basic k3y", "Bearer"} {
		r := do(t, "GET", gw.URL()+"/relay/secured/x", nil, map[string]string{"Authorization": auth})
		wantCode(t, r, 401, "UNAUTHORIZED")
	}
	r := do(t, "GET", gw.URL()+"/relay/secured/x", nil, map[string]string{"Authorization": "Bearer k3y"})
	if r.status != 200 {
		t.Fatalf("with key: %d %q", r.status, r.body)
	}
	if h := http.Header(decodeEcho(t, r).Header); h.Get("Authorization") != "" {
		t.Fatalf("gateway key reached the upstream: %v", h)
	}
	r = do(t, "GET", gw.URL()+"/relay/open/x", nil, map[string]string{"Authorization": "Bearer upstream-own"})
	if h := http.Header(decodeEcho(t, r).Header); r.status != 200 || h.Get("Authorization") != "Bearer upstream-own" {
		t.Fatalf("unsecured upstream: %d %v", r.status, h)
	}
}

// TestRelayClientDisconnect proves a client that goes away cancels the
// upstream request, both while waiting for the head and while streaming.
func TestRelayClientDisconnect(t *testing.T) {
	started := make(chan string, 2)
	canceled := make(chan string, 2)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Write([]byte("first"))
			w.(http.Flusher).Flush()
		}
		started <- r.URL.Path
		<-r.Context().Done()
		canceled <- r.URL.Path
	}))
	defer up.Close()
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"api": up.URL}))
	for _, path := range []string{"/head", "/stream"} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", gw.URL()+"/relay/api"+path, nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				buf := make([]byte, 5)
				_, err = resp.Body.Read(buf)
				<-ctx.Done()
				resp.Body.Close()
			}
			errc <- err
		}()
		select {
		case p := <-started:
			if p != path {
				t.Fatalf("started %s, want %s", p, path)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: upstream not reached", path)
		}
		cancel()
		left := time.Now()
		select {
		case p := <-canceled:
			if p != path {
				t.Fatalf("canceled %s, want %s", p, path)
			}
			// At once, not by keep-alive silence (PeerTimeout, 4 s).
			if d := time.Since(left); d > 2*time.Second {
				t.Fatalf("%s: upstream cancelled only %s after the client left", path, d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: upstream request not cancelled after the client left", path)
		}
		<-errc
	}
}
