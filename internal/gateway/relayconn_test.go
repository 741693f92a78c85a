package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// TestRelayConnectionConfined: in embedded mode the relay runs on its own
// connection, which may publish on relay subjects and nowhere else (not
// the JetStream API, not a KV bucket): defence in depth behind
// subjects.CheckPeer. Clients without credentials still get full access
// when no agents are configured (local development).
func TestRelayConnectionConfined(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.Embedded.Listen = "-1"
	g := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	rnc := g.relayNC.Load()
	if rnc == nil || rnc == g.nc.Load() {
		t.Fatal("embedded mode: the relay has no connection of its own")
	}
	req, _ := subjects.RelayRequest("demo")
	if err := rnc.Publish(req, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := rnc.FlushTimeout(5 * time.Second); err != nil || rnc.LastError() != nil {
		t.Fatalf("relay subject refused: %v %v", err, rnc.LastError())
	}
	for _, forbidden := range []string{"$JS.API.STREAM.DELETE." + subjects.MegaphoneStream, "$KV." + subjects.MiddlemanTrustBucket + ".ESUB.x", "sb.mp.ev.x"} {
		if err := rnc.Publish(forbidden, []byte("x")); err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, 5*time.Second, func() error {
			_ = rnc.FlushTimeout(time.Second)
			if err := rnc.LastError(); err == nil || !strings.Contains(strings.ToLower(err.Error()), "permissions violation") || !strings.Contains(err.Error(), forbidden) {
				return fmt.Errorf("publish to %s: last error %v", forbidden, err)
			}
			return nil
		})
	}
	if !rnc.IsConnected() {
		t.Fatal("a refused publish closed the relay connection")
	}
	// Anonymous local clients keep full access without embedded.agents.
	anon, err := nats.Connect(g.EmbeddedURL())
	if err != nil {
		t.Fatalf("anonymous client: %v", err)
	}
	defer anon.Close()
	if _, err := anon.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatalf("anonymous JetStream request: %v", err)
	}
}
