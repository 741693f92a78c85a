package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEmbeddedRestartKeepsStore proves embedded mode is ready at once, serves
// the operational routes, and keeps its JetStream store across a restart.
func TestEmbeddedRestartKeepsStore(t *testing.T) {
	dir := t.TempDir()
	mod := func(c *gateway.Config) { c.DataDir = dir }
	gw := harness.StartEmbedded(t, mod)

	if code, body := get(t, gw.URL()+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz = %d %q", code, body)
	}
	if code, body := get(t, gw.URL()+"/readyz"); code != 200 {
		t.Fatalf("readyz = %d %q", code, body)
	}
	code, body := get(t, gw.URL()+"/metrics")
	for _, want := range []string{"switchboard_nats_connected 1", `switchboard_http_requests_total{code="200",method="GET",route="/readyz"}`, "go_goroutines"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("metrics missing %q (status %d)", want, code)
		}
	}
	if code, body := get(t, gw.URL()+"/no/such/route"); code != 404 || !strings.Contains(body, `"code":"NOT_FOUND"`) {
		t.Fatalf("unknown route = %d %q", code, body)
	}

	nc, err := nats.Connect(gw.EmbeddedURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PERSIST", Subjects: []string{"persist.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "persist.x", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := gw.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := harness.IsReady(gw.URL()); err == nil {
		t.Fatal("stopped gateway still answers ready")
	}

	gw2 := harness.StartEmbedded(t, mod)
	nc2, err := nats.Connect(gw2.EmbeddedURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	s, err := js2.Stream(ctx, "PERSIST")
	if err != nil {
		t.Fatalf("stream lost across restart: %v", err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, "persist.x")
	if err != nil || string(msg.Data) != "kept" {
		t.Fatalf("message lost across restart: %v", err)
	}
}

// TestExternalReadinessFollowsNATS proves an external-mode gateway reports
// not-ready while its NATS server is gone and ready again after it returns.
func TestExternalReadinessFollowsNATS(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	gw := harness.StartN(t, 1, srv.URL(), nil)[0]

	srv.Stop()
	natstest.Eventually(t, 10*time.Second, func() error {
		if err := harness.IsReady(gw.URL()); err == nil {
			return fmt.Errorf("still ready with NATS down")
		}
		return nil
	})
	code, body := get(t, gw.URL()+"/readyz")
	var e struct{ Code, Message string }
	if code != 503 || json.Unmarshal([]byte(body), &e) != nil || e.Code != "NOT_READY" || e.Message == "" {
		t.Fatalf("readyz while down = %d %q", code, body)
	}
	srv.Restart(t)
	harness.WaitReady(t, gw.URL())
}

// TestClusterGatewaysSurviveNodeLoss proves two gateways on a 3-node
// cluster stay ready while one NATS node is down, and after it returns.
func TestClusterGatewaysSurviveNodeLoss(t *testing.T) {
	cluster, gws := harness.StartOnCluster(t, 2, nil)
	for _, victim := range []int{0, 2} {
		cluster.Stop(victim)
		for _, gw := range gws {
			harness.WaitReady(t, gw.URL())
		}
		cluster.Restart(victim)
		for _, gw := range gws {
			harness.WaitReady(t, gw.URL())
		}
	}
}
