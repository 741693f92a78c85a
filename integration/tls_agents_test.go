package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
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
	"github.com/switchboard/switchboard/internal/tlstest"
)

// TestAgentMutualTLS: the embedded server requires client certificates of
// its CA. An agent with one serves its upstream; without one, with one of
// another CA, or in plaintext it is refused at once with a clear error;
// with a valid certificate but a's credentials it still cannot serve b.
func TestAgentMutualTLS(t *testing.T) {
	up := echoUpstream(t)
	var agents *tlstest.CA
	gw := startTLSGateway(t, func(c *gateway.Config, ca *tlstest.CA) {
		agents = tlstest.NewCA(t, "agents")
		nats := ca.Server("nats")
		c.Embedded.TLSCertFile, c.Embedded.TLSKeyFile = nats.CertFile, nats.KeyFile
		c.Embedded.TLSCAFile, c.Embedded.TLSVerifyClients = agents.CertFile, true
		c.Embedded.Agents = []gateway.AgentUser{{User: "ua", Password: "pa", Upstreams: []string{"a"}}}
		c.Relay.AgentWait = 500 * time.Millisecond
	})
	url := gw.EmbeddedURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("embedded URL %s, want tls://", url)
	}
	good := agents.Client("agent-1")
	cfgFor := func(upstream string, cert tlstest.Files, url string) *agent.AgentUpstream {
		c := agentConfig(t, url, map[string]string{upstream: up.URL})
		c.NATS.User, c.NATS.Password = "ua", "pa"
		c.NATS.TLSCAFile, c.NATS.TLSCertFile, c.NATS.TLSKeyFile = gw.ca.CertFile, cert.CertFile, cert.KeyFile
		return c
	}
	startAgent(t, cfgFor("a", good, url))
	if status, body, _ := call(t, gw.h2, "GET", gw.URL()+"/relay/a/x", "", nil); status != 200 {
		t.Fatalf("/relay/a = %d %s", status, body)
	}

	// Another CA with the same name: Go's client offers a certificate only
	// when its issuer is one the server names, so this one is really sent
	// and refused by the server's verification.
	foreign := tlstest.NewCA(t, "agents").Client("agent-1")
	plain := cfgFor("a", tlstest.Files{}, "nats://"+strings.TrimPrefix(url, "tls://"))
	plain.NATS.TLSCAFile = ""
	// Under TLS 1.3 the client may finish its handshake before the server
	// checks its certificate: then the server's alert is lost to a broken
	// pipe and natsconn names the likely cause instead.
	const refused = "the server refused our client certificate"
	for name, tc := range map[string]struct {
		cfg  *agent.AgentUpstream
		want string
	}{
		"no certificate":           {cfgFor("a", tlstest.Files{}, url), "certificate required|" + refused},
		"another CA's certificate": {cfgFor("a", foreign, url), "unknown certificate authority|" + refused},
		"nats:// URL, no CA":       {plain, "certificate signed by unknown authority"}, // nats.go upgrades to TLS; the server's certificate does not verify
		"a's credentials for b":    {cfgFor("b", good, url), `not allowed to serve upstream "b"`},
	} {
		c := tc.cfg
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		u, err := agent.StartUpstream(ctx, c, harness.Logger(t))
		late := ctx.Err()
		cancel()
		if err == nil {
			u.Kill()
			t.Errorf("%s: the agent started", name)
			continue
		}
		if late != nil || strings.Contains(err.Error(), "\n") || !containsAny(err.Error(), tc.want) {
			t.Errorf("%s: not a prompt one-line error with %q: %v", name, tc.want, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if status, body, _ := call(t, gw.h2, "GET", gw.URL()+"/relay/b/x", "", nil); status != 503 {
		t.Fatalf("/relay/b = %d %s, want 503 NO_AGENT", status, body)
	}
}

// TestAgentOverGatewayWebsocket: an agent that reaches nothing but the
// gateway's HTTPS port (wss://gateway/nats, through a forwarder of that one
// port) serves its upstream end to end: a request, a 64 MiB body both ways
// and a relayed WebSocket (wss://gateway/relay/ws/...: messages both ways,
// 1 MiB and larger messages, ping, the target's close code). Cutting the
// forwarder cuts the agent off: it had no other way in.
func TestAgentOverGatewayWebsocket(t *testing.T) {
	const size = 64 << 20
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x %v", n, h.Sum(nil), err)
		case "/download":
			w.Header().Set("Content-Length", fmt.Sprint(size))
			io.Copy(w, &pattern{n: size})
		default:
			io.WriteString(w, "hello "+r.URL.Path)
		}
	}))
	t.Cleanup(up.Close)
	echo := newWSUpstream(t)
	gw := startTLSGateway(t, func(c *gateway.Config, _ *tlstest.CA) {
		c.Embedded.Websocket = true
		c.Embedded.Agents = []gateway.AgentUser{{User: "ua", Password: "pa", Upstreams: []string{"api", "ws"}}}
	})
	only := newPortForward(t, gw.Addr())
	wss := "wss://" + only.Addr() + gateway.NATSWebsocketPath
	cfg := agentConfig(t, wss, map[string]string{"api": up.URL, "ws": echo.URL})
	cfg.NATS.User, cfg.NATS.Password, cfg.NATS.TLSCAFile = "ua", "pa", gw.ca.CertFile
	startAgent(t, cfg)
	base := gw.URL() + "/relay/api"

	if status, body, _ := call(t, gw.h2, "GET", base+"/x", "", nil); status != 200 || body != "hello /x" {
		t.Fatalf("request: %d %q", status, body)
	}
	t.Run("64 MiB up", func(t *testing.T) {
		req, _ := http.NewRequest("PUT", base+"/upload", &pattern{n: size})
		req.ContentLength = size
		resp, err := gw.h2.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d %s <nil>", size, patternSum(size)); string(b) != want {
			t.Fatalf("upload: %d %q, want %q", resp.StatusCode, b, want)
		}
	})
	t.Run("64 MiB down", func(t *testing.T) {
		resp, err := gw.h2.Get(base + "/download")
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || n != size || fmt.Sprintf("%x", h.Sum(nil)) != patternSum(size) {
			t.Fatalf("download: %d bytes, %v", n, err)
		}
	})
	t.Run("websocket", func(t *testing.T) {
		big := 8 << 20
		if raceEnabled {
			big = 4 << 20
		}
		exerciseWSClient(t, "wss"+strings.TrimPrefix(gw.URL(), "https")+"/relay/ws/echo", big, gw.h1)
		if o := echo.origin.Load().(string); o != "https://app.example|127.0.0.1" {
			t.Fatalf("upstream saw Origin|X-Forwarded-For %q", o)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		// A wrong password over /nats is refused like on the client port.
		bad := agentConfig(t, wss, map[string]string{"api": up.URL})
		bad.NATS.User, bad.NATS.Password, bad.NATS.TLSCAFile = "ua", "wrong", gw.ca.CertFile
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if u, err := agent.StartUpstream(ctx, bad, harness.Logger(t)); err == nil {
			u.Kill()
			t.Fatal("wrong password accepted over /nats")
		}
		// The agent's permissions apply over /nats too: ua may not serve b.
		other := agentConfig(t, wss, map[string]string{"b": up.URL})
		other.NATS.User, other.NATS.Password, other.NATS.TLSCAFile = "ua", "pa", gw.ca.CertFile
		if u, err := agent.StartUpstream(ctx, other, harness.Logger(t)); err == nil || !strings.Contains(err.Error(), `not allowed to serve upstream "b"`) {
			if err == nil {
				u.Kill()
			}
			t.Fatalf("ua serving b over /nats: %v", err)
		}
		// A plain GET (no upgrade) or a browser (Origin) gets 400.
		if status, _, _ := call(t, gw.h1, "GET", gw.URL()+gateway.NATSWebsocketPath, "", nil); status != 400 {
			t.Fatalf("GET /nats without upgrade: %d", status)
		}
	})
	t.Run("one port only", func(t *testing.T) {
		// With the forwarded port gone the agent has no way in: the
		// gateway answers 503 NO_AGENT.
		only.Cut()
		natstest.Eventually(t, 20*time.Second, func() error {
			if status, body, _ := call(t, gw.h2, "GET", base+"/x", "", nil); status != 503 || !strings.Contains(body, "NO_AGENT") {
				return fmt.Errorf("after the cut: %d %s", status, body)
			}
			return nil
		})
	})
}

// containsAny reports whether s contains one of the |-separated parts of
// alternatives.
func containsAny(s, alternatives string) bool {
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}
