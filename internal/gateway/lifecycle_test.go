package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats-server's access-time ticker is process-global: a filestore
		// registered right after the last one unregistered can leave the
		// old ticker running (its done channel is consumed by the new one).
		// Tests here start and stop many servers in quick succession.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
		// A stream created while its server shuts down (these tests stop
		// gateways and servers mid-provisioning) can leave nats-server's
		// state flusher behind.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"))
}

// testConfig is the default configuration against natsURL with a random
// loopback listener.
func testConfig(t *testing.T, natsURL string) *Config {
	t.Helper()
	l := Loader()
	l.Getenv = func(string) string { return "" }
	var c Config
	if _, err := l.Load(nil, &c); err != nil {
		t.Fatalf("default config: %v", err)
	}
	c.Listen = "127.0.0.1:0"
	c.NATS.URL = natsURL
	c.DataDir = t.TempDir()
	c.Shutdown.Grace = 10 * time.Second
	return &c
}

// testLogger logs through t.Logf until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// start starts a gateway and shuts it down at the end of the test.
func start(t *testing.T, cfg *Config) *Gateway {
	t.Helper()
	g, err := Start(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Grace)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return g
}

// envelope is a response's status and JSON error envelope.
type envelope struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func do(t *testing.T, method, url string) envelope {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	e := envelope{Status: resp.StatusCode}
	_ = json.Unmarshal(raw, &e)
	return e
}

func waitFailed(t *testing.T, g *Gateway, within time.Duration) {
	t.Helper()
	select {
	case <-g.Failed():
	case <-time.After(within):
		t.Fatalf("gateway did not fail within %s", within)
	}
}

func lostCount(t *testing.T, g *Gateway) float64 {
	t.Helper()
	mfs, err := g.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "switchboard_nats_connection_lost_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("switchboard_nats_connection_lost_total not registered")
	return 0
}

// TestNATSClosedByFatalServerError reproduces the original attack: a
// subject longer than the server's max_control_line makes nats-server
// answer -ERR 'maximum control line exceeded', and nats.go closes the
// connection for good. The gateway must notice: /healthz 503 NATS_CLOSED,
// the loss counted, Failed closed with ErrNATSClosed.
func TestNATSClosedByFatalServerError(t *testing.T) {
	s := natstest.RunServer(t, nil)
	g := start(t, testConfig(t, s.URL()))
	if err := g.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e := do(t, "GET", g.URL()+"/healthz"); e.Status != http.StatusOK {
		t.Fatalf("healthz before: %+v", e)
	}
	if err := g.nc.Load().Publish(strings.Repeat("x", 8192), nil); err != nil {
		t.Fatalf("publish: %v", err)
	}
	waitFailed(t, g, 10*time.Second)
	if err := g.Err(); !errors.Is(err, ErrNATSClosed) || !strings.Contains(err.Error(), "maximum control line") {
		t.Fatalf("Err() = %v, want ErrNATSClosed naming the server's error", err)
	}
	if e := do(t, "GET", g.URL()+"/healthz"); e.Status != http.StatusServiceUnavailable || e.Code != "NATS_CLOSED" {
		t.Fatalf("healthz after: %+v, want 503 NATS_CLOSED", e)
	}
	if e := do(t, "GET", g.URL()+"/readyz"); e.Status != http.StatusServiceUnavailable || e.Code != "NOT_READY" {
		t.Fatalf("readyz after: %+v, want 503 NOT_READY", e)
	}
	if n := lostCount(t, g); n != 1 {
		t.Fatalf("switchboard_nats_connection_lost_total = %v, want 1", n)
	}
}

// TestRunFailsWhenCredentialsRevoked: the server drops the gateway's user,
// reconnects fail with an authorization violation twice, nats.go closes
// the connection, and Run shuts down and returns ErrNATSClosed.
func TestRunFailsWhenCredentialsRevoked(t *testing.T) {
	s := natstest.RunServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "gw", Password: "secret"}}
	})
	cfg := testConfig(t, s.URL())
	cfg.NATS.User, cfg.NATS.Password = "gw", "secret"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, cfg, testLogger(t)) }()
	// Run exposes no gateway: watch the server for the gateway's client.
	natstest.Eventually(t, 30*time.Second, func() error {
		cz, err := s.Connz(&server.ConnzOptions{Username: true})
		if err != nil {
			return err
		}
		for _, c := range cz.Conns {
			if c.Name == "switchboard-gateway" && c.NumSubs > 0 {
				return nil
			}
		}
		return errors.New("gateway not connected yet")
	})
	// Reloading the server's users while it still creates the gateway's
	// streams races inside nats-server: wait until provisioning is done
	// (seven streams, the Megaphone reaper consumer).
	natstest.Eventually(t, 30*time.Second, func() error {
		jsz, err := s.Jsz(nil)
		if err != nil {
			return err
		}
		if jsz.Streams < 7 || jsz.Consumers < 1 {
			return fmt.Errorf("provisioning: %d streams, %d consumers", jsz.Streams, jsz.Consumers)
		}
		return nil
	})
	opts := s.Options()
	opts.Users = []*server.User{{Username: "someone-else", Password: "other"}}
	if err := s.ReloadOptions(&opts); err != nil {
		t.Fatalf("reload: %v", err)
	}
	select {
	case err := <-ran:
		if !errors.Is(err, ErrNATSClosed) {
			t.Fatalf("Run returned %v, want ErrNATSClosed", err)
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
			t.Errorf("Run error %q does not name the cause", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run still running 20s after the credentials were revoked")
	}
}

// TestNotReadyWhileProvisioning holds provisioning (the gateway's user may
// not publish JetStream stream API requests, so every create times out and
// is retried, as while a fresh cluster is busy) and checks what
// clients see meanwhile: /healthz 200 at once, /readyz and protocol routes
// 503 NOT_READY naming what is still being provisioned; Shutdown ends the
// start-up promptly.
func TestNotReadyWhileProvisioning(t *testing.T) {
	s := natstest.RunServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "gw", Password: "secret", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.STREAM.>"}},
		}}}
	})
	cfg := testConfig(t, s.URL())
	cfg.NATS.User, cfg.NATS.Password = "gw", "secret"
	began := time.Now()
	g, err := Start(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if e := do(t, "GET", g.URL()+"/healthz"); e.Status != http.StatusOK {
		t.Fatalf("healthz: %+v", e)
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("healthz answered after %s", d)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		e := do(t, "GET", g.URL()+"/readyz")
		// The first step, agreeing on the partition count, holds the rest.
		for _, want := range []string{"provisioning", "bucket " + subjects.ClusterBucket} {
			if e.Status != http.StatusServiceUnavailable || e.Code != "NOT_READY" || !strings.Contains(e.Message, want) {
				return errors.New("readyz: " + e.Message)
			}
		}
		return nil
	})
	for _, r := range [][2]string{{"POST", "/create"}, {"GET", "/mm"}, {"GET", "/channels/ns/x"}, {"PROPFIND", "/relay/api/x"}} {
		if e := do(t, r[0], g.URL()+r[1]); e.Status != http.StatusServiceUnavailable || e.Code != "NOT_READY" {
			t.Errorf("%s %s while provisioning: %+v, want 503 NOT_READY", r[0], r[1], e)
		}
	}
	stopped := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d := time.Since(stopped); d > 3*time.Second {
		t.Errorf("shutdown during provisioning took %s", d)
	}
	if err := g.Err(); err != nil {
		t.Errorf("Err() after shutdown = %v, want nil (a shutdown is no failure)", err)
	}
}

// TestRunFailsWhenProvisioningFails: a create that retrying cannot fix
// (the stream's subjects overlap an existing stream) stops Run with
// ErrStart.
func TestRunFailsWhenProvisioningFails(t *testing.T) {
	s := natstest.RunServer(t, nil)
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	if _, err := js.AddStream(&nats.StreamConfig{Name: "SQUATTER", Subjects: []string{subjects.MegaphoneEventsAll()}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = Run(ctx, testConfig(t, s.URL()), testLogger(t))
	if !errors.Is(err, ErrStart) {
		t.Fatalf("Run = %v, want ErrStart", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run returned only when its context ended")
	}
}
