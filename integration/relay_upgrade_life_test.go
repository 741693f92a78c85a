package integration

import (
	"context"
	"errors"
	"fmt"
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

// TestRelayUpgradeShutdown: a gateway shutting down closes its upgraded
// connections at once instead of waiting for shutdown.grace; an agent
// shutting down closes its upgraded connections after its ordinary
// requests, and returns without waiting for the grace either.
func TestRelayUpgradeShutdown(t *testing.T) {
	up := newWSUpstream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("gateway", func(t *testing.T) {
		gw := harness.StartEmbedded(t, relayConfig)
		startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL}))
		ws := dialWS(t, ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
		defer ws.CloseNow()
		if err := echoOnce(ctx, ws, "before"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		if err := gw.Shutdown(sctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("gateway shutdown took %s with a WebSocket open", d)
		}
		if _, _, err := ws.Read(ctx); err == nil {
			t.Fatal("WebSocket still open after the gateway stopped")
		}
	})

	t.Run("agent", func(t *testing.T) {
		gw := harness.StartEmbedded(t, relayConfig)
		a := startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL}))
		ws := dialWS(t, ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
		defer ws.CloseNow()
		if err := echoOnce(ctx, ws, "before"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		if err := a.Shutdown(sctx); err != nil {
			t.Fatalf("agent shutdown: %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("agent shutdown took %s with a WebSocket open", d)
		}
		_, _, err := ws.Read(ctx)
		if err == nil {
			t.Fatal("WebSocket still open after the agent stopped")
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) && ce.Code == websocket.StatusNormalClosure {
			t.Fatalf("a cut connection looks like a normal close: %v", err)
		}
		// No agent left: a new upgrade is 503 before anything is relayed.
		_, resp, err := websocket.Dial(ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
		if err == nil || resp == nil || resp.StatusCode != 503 {
			t.Fatalf("upgrade without an agent: %v %+v", err, resp)
		}
	})
}
