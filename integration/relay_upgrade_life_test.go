package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// echoOnce writes msg on c and checks it comes back.
func echoOnce(ctx context.Context, c *websocket.Conn, msg string) error {
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	_, data, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if string(data) != msg {
		return fmt.Errorf("echo %q, want %q", data, msg)
	}
	return nil
}

// TestRelayUpgradeAcrossClusterAgentKilled: caller on node 1, two agents
// of one upstream on nodes 2 and 3. Killing the agent that serves a
// WebSocket closes it promptly; a new upgrade goes to the other agent.
func TestRelayUpgradeAcrossClusterAgentKilled(t *testing.T) {
	c := natstest.NewCluster(t, 3)
	gws := harness.StartN(t, 1, c.Servers[0].ClientURL(), func(cfg *gateway.Config) {
		relayConfig(cfg)
		cfg.JetStream.Replicas = 3
	})
	up := newWSUpstream(t)
	a1 := startAgent(t, agentConfig(t, c.Servers[1].ClientURL(), map[string]string{"ws": up.URL}))
	a2 := startAgent(t, agentConfig(t, c.Servers[2].ClientURL(), map[string]string{"ws": up.URL}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := wsURL(gws[0].URL(), "/relay/ws/echo")
	var ws *websocket.Conn
	natstest.Eventually(t, 10*time.Second, func() error {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			return err
		}
		ws = c
		return nil
	})
	defer ws.CloseNow()
	if err := echoOnce(ctx, ws, "across"); err != nil {
		t.Fatal(err)
	}
	serving, other := a1, a2
	if a2.Servers()[0].Upgraded() == 1 {
		serving, other = a2, a1
	}
	if serving.Servers()[0].Upgraded() != 1 {
		t.Fatalf("no agent counts the upgraded connection")
	}
	serving.Kill()
	start := time.Now()
	if _, _, err := ws.Read(ctx); err == nil {
		t.Fatal("read after the serving agent died succeeded")
	}
	t.Logf("connection cut %s after the agent died", time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("connection cut after %s", d)
	}
	ws2 := dialWS(t, ctx, url, nil)
	defer ws2.CloseNow()
	if err := echoOnce(ctx, ws2, "again"); err != nil {
		t.Fatal(err)
	}
	if other.Servers()[0].Upgraded() != 1 {
		t.Fatal("the new upgrade is not served by the other agent")
	}
}

// TestRelayUpgradeIdleTimeout: relay.upgrade_idle_timeout closes a
// connection without traffic, not one with traffic.
func TestRelayUpgradeIdleTimeout(t *testing.T) {
	up := newWSUpstream(t)
	gw := harness.StartEmbedded(t, func(c *gateway.Config) {
		relayConfig(c)
		c.Relay.UpgradeIdleTimeout = 600 * time.Millisecond
	})
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	busy := dialWS(t, ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
	defer busy.CloseNow()
	idle := dialWS(t, ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
	defer idle.CloseNow()
	idleErr := make(chan error, 1)
	start := time.Now()
	go func() { _, _, err := idle.Read(ctx); idleErr <- err }()
	// The busy one talks every 100 ms until the idle one is closed.
	for i := 0; ; i++ {
		select {
		case err := <-idleErr:
			if err == nil || time.Since(start) < 600*time.Millisecond {
				t.Fatalf("idle connection: %v after %s", err, time.Since(start))
			}
			if err := echoOnce(ctx, busy, "still here"); err != nil {
				t.Fatalf("busy connection closed too: %v", err)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if err := echoOnce(ctx, busy, fmt.Sprint(i)); err != nil {
			t.Fatalf("busy connection: %v", err)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatal("idle connection never closed")
		}
	}
}

// slowUpstream answers every request "done" once release is closed;
// entered gets a value when a request arrived.
type slowUpstream struct {
	*httptest.Server
	entered     chan struct{}
	release     chan struct{}
	releaseOnce func()
}

func newSlowUpstream(t testing.TB) *slowUpstream {
	u := &slowUpstream{entered: make(chan struct{}, 16), release: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.entered <- struct{}{}
		select {
		case <-u.release:
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	}))
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(u.release) }); u.Close() })
	u.releaseOnce = func() { once.Do(func() { close(u.release) }) }
	return u
}

// answer is the outcome of one HTTP request and when it came.
type answer struct {
	status int
	body   string
	err    error
	at     time.Time
}

// getAsync GETs url on a goroutine of its own.
func getAsync(url string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			ch <- answer{err: err, at: time.Now()}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- answer{status: resp.StatusCode, body: string(b), err: err, at: time.Now()}
	}()
	return ch
}

// readEnd reads ws until it fails and reports the error and when.
func readEnd(ctx context.Context, ws *websocket.Conn) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				ch <- answer{err: err, at: time.Now()}
				return
			}
		}
	}()
	return ch
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// TestRelayUpgradeShutdown: a gateway or an agent shutting down lets an
// ordinary relayed request in flight finish while an open WebSocket stays
// usable, and closes the WebSocket only then (the client reads an
// abnormal close: the TCP connection ends without a close frame); an
// agent refuses new upgrades at once; when the grace runs out first, the
// WebSocket is closed then.
func TestRelayUpgradeShutdown(t *testing.T) {
	up := newWSUpstream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// inFlight opens a WebSocket and a slow ordinary request through gw.
	inFlight := func(t *testing.T, gw *harness.Gateway, slow *slowUpstream) (*websocket.Conn, <-chan answer) {
		ws := dialWS(t, ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
		t.Cleanup(func() { ws.CloseNow() })
		if err := echoOnce(ctx, ws, "before"); err != nil {
			t.Fatal(err)
		}
		slowAnswer := getAsync(gw.URL() + "/relay/slow/work")
		waitFor(t, slow.entered, "the slow request to reach its target")
		return ws, slowAnswer
	}
	// order checks that the slow request is answered 200 after release,
	// and the WebSocket closed only after the release, abnormally.
	order := func(t *testing.T, ws *websocket.Conn, slow *slowUpstream, slowAnswer <-chan answer) {
		select {
		case a := <-slowAnswer:
			t.Fatalf("slow request answered before its target did: %+v", a)
		default:
		}
		if err := echoOnce(ctx, ws, "during shutdown"); err != nil {
			t.Fatalf("WebSocket closed while an ordinary request was in flight: %v", err)
		}
		end := readEnd(ctx, ws)
		released := time.Now()
		slow.releaseOnce()
		a := waitFor(t, slowAnswer, "the slow request's answer")
		if a.err != nil || a.status != 200 || a.body != "done" {
			t.Fatalf("slow request during shutdown: %+v", a)
		}
		// The client may read the answer's last bytes a moment after the
		// close reached it (they travel on different connections); what
		// counts is that the WebSocket stayed open until the target
		// answered.
		e := waitFor(t, end, "the WebSocket's close")
		if e.at.Before(released) {
			t.Fatalf("WebSocket closed (%v) %s before the ordinary request's target answered", e.err, released.Sub(e.at))
		}
		if code := websocket.CloseStatus(e.err); code != -1 {
			t.Fatalf("WebSocket closed with a close frame (%d), want the TCP connection cut: %v", code, e.err)
		}
		t.Logf("WebSocket closed %s after the ordinary request's target answered: %v", e.at.Sub(released).Round(time.Millisecond), e.err)
	}

	t.Run("gateway", func(t *testing.T) {
		slow := newSlowUpstream(t)
		gw := harness.StartEmbedded(t, relayConfig)
		startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL, "slow": slow.URL}))
		ws, slowAnswer := inFlight(t, gw, slow)
		shut := make(chan error, 1)
		go func() {
			sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
			defer scancel()
			shut <- gw.Shutdown(sctx)
		}()
		// Shutdown began: the listener is closed.
		natstest.Eventually(t, 10*time.Second, func() error {
			c, err := net.Dial("tcp", gw.Addr())
			if err != nil {
				return nil
			}
			c.Close()
			return errors.New("gateway still accepting")
		})
		order(t, ws, slow, slowAnswer)
		if err := waitFor(t, shut, "the gateway's shutdown"); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	})

	t.Run("gateway-grace-over", func(t *testing.T) {
		slow := newSlowUpstream(t)
		// Not the harness's gateway: its shutdown error is expected here.
		cfg := harness.Config(t)
		relayConfig(cfg)
		g, err := gateway.Start(ctx, cfg, harness.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Shutdown(ctx) })
		if err := g.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		gw := &harness.Gateway{Gateway: g, Config: cfg}
		startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL, "slow": slow.URL}))
		ws, _ := inFlight(t, gw, slow)
		end := readEnd(ctx, ws)
		const grace = 1500 * time.Millisecond
		start := time.Now()
		sctx, scancel := context.WithTimeout(ctx, grace)
		defer scancel()
		if err := gw.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("shutdown with a request stuck: %v, want the grace's deadline", err)
		}
		e := waitFor(t, end, "the WebSocket's close")
		if d := e.at.Sub(start); d < grace-100*time.Millisecond || d > grace+5*time.Second {
			t.Fatalf("WebSocket closed %s after shutdown began, want when the grace (%s) ran out", d, grace)
		}
	})

	t.Run("agent", func(t *testing.T) {
		slow := newSlowUpstream(t)
		gw := harness.StartEmbedded(t, relayConfig)
		a := startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL, "slow": slow.URL}))
		ws, slowAnswer := inFlight(t, gw, slow)
		shut := make(chan error, 1)
		go func() {
			sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
			defer scancel()
			shut <- a.Shutdown(sctx)
		}()
		// The draining agent takes no new upgrade: with no other agent
		// it is 503 before anything is relayed.
		natstest.Eventually(t, 20*time.Second, func() error {
			c, resp, err := websocket.Dial(ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
			if err == nil {
				c.CloseNow()
				return errors.New("upgrade still taken")
			}
			if resp == nil || resp.StatusCode != 503 {
				return fmt.Errorf("upgrade while the agent drains: %v %+v", err, resp)
			}
			return nil
		})
		order(t, ws, slow, slowAnswer)
		if err := waitFor(t, shut, "the agent's shutdown"); err != nil {
			t.Fatalf("agent shutdown: %v", err)
		}
	})
}
