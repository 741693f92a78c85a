package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
)

// wsUpstream is a WebSocket echo server (coder/websocket, the project's
// WebSocket library). It negotiates the subprotocol "echo.v1", echoes
// every message with its type, and closes with code N when sent
// "close:N". /deny answers 403 without upgrading. hits counts requests.
type wsUpstream struct {
	*httptest.Server
	hits   atomic.Int64
	origin atomic.Value
}

func newWSUpstream(t testing.TB) *wsUpstream {
	u := &wsUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.origin.Store(r.Header.Get("Origin") + "|" + r.Header.Get("X-Forwarded-For"))
		if r.URL.Path == "/deny" {
			w.Header().Set("X-Why", "denied")
			http.Error(w, "no websocket for you", http.StatusForbidden)
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"echo.v1"}, InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(128 << 20)
		ctx := r.Context()
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			if s, ok := strings.CutPrefix(string(data), "close:"); ok {
				code, _ := strconv.Atoi(s)
				c.Close(websocket.StatusCode(code), "bye "+s)
				return
			}
			if err := c.Write(ctx, typ, data); err != nil {
				return
			}
		}
	}))
	t.Cleanup(u.Close)
	return u
}

func wsURL(base, path string) string { return "ws" + strings.TrimPrefix(base, "http") + path }

func dialWS(t testing.TB, ctx context.Context, url string, h http.Header) *websocket.Conn {
	t.Helper()
	return dialWSClient(t, ctx, url, h, nil)
}

// dialWSClient is dialWS with an HTTP client (nil: the default one), for
// wss:// URLs of a test CA.
func dialWSClient(t testing.TB, ctx context.Context, url string, h http.Header, client *http.Client) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"echo.v1"}, HTTPHeader: h, HTTPClient: client})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	c.SetReadLimit(128 << 20)
	return c
}

// startAgentClient starts an `agent client` for upstream on gw's NATS.
func startAgentClient(t testing.TB, natsURL, upstream string, extra ...string) *agent.Client {
	t.Helper()
	l := agent.ClientLoader()
	l.Getenv = func(string) string { return "" }
	var cfg agent.AgentClient
	args := append([]string{"--nats", natsURL, "--listen", "127.0.0.1:0", "--upstream", upstream, "--agent-wait", "2s"}, extra...)
	if _, err := l.Load(args, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := agent.StartClient(ctx, &cfg, harness.Logger(t).With("agent", "client"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cl.Shutdown(sctx)
	})
	return cl
}

// exerciseWS runs the WebSocket fidelity checks on one connection url.
func exerciseWS(t *testing.T, url string, big int) { exerciseWSClient(t, url, big, nil) }

// exerciseWSClient is exerciseWS dialing with client (nil: the default).
func exerciseWSClient(t *testing.T, url string, big int, client *http.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := dialWSClient(t, ctx, url, http.Header{"Origin": {"https://app.example"}}, client)
	defer c.CloseNow()
	if c.Subprotocol() != "echo.v1" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}

	// 10,000 small messages, in order.
	const n = 10000
	werr := make(chan error, 1)
	go func() {
		for i := range n {
			if err := c.Write(ctx, websocket.MessageText, []byte(strconv.Itoa(i))); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	for i := range n {
		typ, data, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(data) != strconv.Itoa(i) {
			t.Fatalf("message %d: %v %q %v", i, typ, data, err)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}

	// Large binary messages, byte-exact.
	for _, size := range []int{1 << 20, big} {
		msg := make([]byte, size)
		rand.Read(msg)
		go func() { werr <- c.Write(ctx, websocket.MessageBinary, msg) }()
		typ, data, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageBinary || !bytes.Equal(data, msg) {
			t.Fatalf("%d-byte message: type %v, %d bytes back, equal %v, err %v", size, typ, len(data), bytes.Equal(data, msg), err)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}

	// Ping/pong: the pong is read by a concurrent Read.
	got := make(chan string, 1)
	go func() {
		_, data, err := c.Read(ctx)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(data)
	}()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	if err := c.Ping(pctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	pcancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("after ping")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "after ping" {
		t.Fatalf("after ping: %q", s)
	}

	// The target's close code and reason reach the client.
	if err := c.Write(ctx, websocket.MessageText, []byte("close:4001")); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "bye 4001" {
		t.Fatalf("close: %v", err)
	}
}

// TestRelayWebSocket relays a WebSocket through the gateway's /relay and
// through `agent client`, both to `agent upstream` in front of a
// coder/websocket echo server.
func TestRelayWebSocket(t *testing.T) {
	up := newWSUpstream(t)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL}))
	cl := startAgentClient(t, gw.EmbeddedURL(), "ws")
	big := 64 << 20
	if raceEnabled {
		big = 16 << 20
	}
	t.Run("gateway", func(t *testing.T) { exerciseWS(t, wsURL(gw.URL(), "/relay/ws/echo"), big) })
	if o := up.origin.Load().(string); o != "https://app.example|127.0.0.1" {
		t.Fatalf("upstream saw Origin|X-Forwarded-For %q", o)
	}
	t.Run("agent-client", func(t *testing.T) { exerciseWS(t, wsURL("http://"+cl.Addr(), "/echo"), 8<<20) })
}

// TestRelayUpgradeRefusals: an answer other than 101 passes as an
// ordinary response; an upstream with an API key refuses an upgrade
// without it before anything reaches the agent; beyond relay.max_upgraded
// an upgrade gets 503 before it is relayed; malformed upgrades get 400.
func TestRelayUpgradeRefusals(t *testing.T) {
	up := newWSUpstream(t)
	gw := harness.StartEmbedded(t, func(c *gateway.Config) {
		relayConfig(c)
		c.Relay.APIKeys = map[string]string{"locked": "sesame"}
		c.Relay.MaxUpgraded = 1
	})
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL, "locked": up.URL}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, resp, err := websocket.Dial(ctx, wsURL(gw.URL(), "/relay/ws/deny"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Why") != "denied" {
		t.Fatalf("non-101 answer: %v %+v", err, resp)
	}

	before := up.hits.Load()
	_, resp, err = websocket.Dial(ctx, wsURL(gw.URL(), "/relay/locked/echo"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key: %v %+v", err, resp)
	}
	if up.hits.Load() != before {
		t.Fatal("an unauthorized upgrade reached the upstream")
	}
	c := dialWS(t, ctx, wsURL(gw.URL(), "/relay/locked/echo"), http.Header{"Authorization": {"Bearer sesame"}})

	// One upgraded connection is open: the limit is reached.
	before = up.hits.Load()
	_, resp, err = websocket.Dial(ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("beyond max_upgraded: %v %+v", err, resp)
	}
	if up.hits.Load() != before {
		t.Fatal("an upgrade beyond the limit reached the upstream")
	}
	c.Close(websocket.StatusNormalClosure, "")
	// Once it closed, a new upgrade goes through.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c2, _, err := websocket.Dial(ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
		if err == nil {
			c2.Close(websocket.StatusNormalClosure, "")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upgrade after the first closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Malformed: an upgrade with a body, an Upgrade value too long.
	for name, hdr := range map[string]map[string]string{
		"body": {"Connection": "Upgrade", "Upgrade": "websocket"},
		"long": {"Connection": "Upgrade", "Upgrade": strings.Repeat("w", 300)},
	} {
		body := strings.NewReader("")
		if name == "body" {
			body = strings.NewReader("payload")
		}
		before = up.hits.Load()
		r := do(t, http.MethodPost, gw.URL()+"/relay/ws/echo", body, hdr)
		if r.status != http.StatusBadRequest {
			t.Fatalf("%s: %d %q", name, r.status, r.body)
		}
		if up.hits.Load() != before {
			t.Fatalf("%s: a malformed upgrade reached the upstream", name)
		}
	}
	if r := do(t, http.MethodGet, gw.URL()+"/relay/ws/plain", nil, nil); r.status != http.StatusUpgradeRequired && r.status != http.StatusBadRequest {
		t.Fatalf("plain GET of a WebSocket endpoint: %d", r.status)
	}
}

// TestRelayWebSocketAgentKilled: an agent that dies mid-connection cuts
// the client's connection within the relay's peer timeout (4 s by
// default).
func TestRelayWebSocketAgentKilled(t *testing.T) {
	up := newWSUpstream(t)
	gw := harness.StartEmbedded(t, relayConfig)
	a := startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialWS(t, ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.Read(ctx); err != nil || string(data) != "hi" {
		t.Fatalf("echo: %q %v", data, err)
	}
	a.Kill()
	start := time.Now()
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("read after the agent died succeeded")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("connection cut after %s", d)
	}
}
