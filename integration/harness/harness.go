// Package harness starts real gateways in-process for tests: against an
// embedded nats-server, a single test server, or a 3-node cluster.
package harness

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// PartitionsEnv names the environment variable that sets
// jetstream.partitions of every gateway the harness starts (CI runs the
// Megaphone, pipe and integration suites once more with 4).
const PartitionsEnv = "SB_TEST_PARTITIONS"

// Partitions is the partition count of the harness's gateways: the value
// of [PartitionsEnv], or 1 when it is unset or not a number in 1..64.
func Partitions() int {
	n, err := strconv.Atoi(os.Getenv(PartitionsEnv))
	if err != nil || n < 1 || n > subjects.MaxPartitions {
		return 1
	}
	return n
}

// Config returns the default gateway configuration adjusted for tests:
// loopback listener on a random port, embedded server on a random port,
// store in a temp dir, debug logs, jetstream.partitions from
// [PartitionsEnv].
func Config(t testing.TB) *gateway.Config {
	t.Helper()
	l := gateway.Loader()
	l.Getenv = func(string) string { return "" }
	var c gateway.Config
	if _, err := l.Load(nil, &c); err != nil {
		t.Fatalf("harness: default config: %v", err)
	}
	c.Listen = "127.0.0.1:0"
	c.Embedded.Listen = "-1"
	c.DataDir = t.TempDir()
	c.Log.Level = "debug"
	c.Shutdown.Grace = 10 * time.Second
	c.JetStream.Partitions = Partitions()
	return &c
}

// Gateway is a gateway started for a test.
type Gateway struct {
	*gateway.Gateway
	Config *gateway.Config
}

// Start starts a gateway with cfg, waits until it is provisioned and
// /readyz answers 200, and shuts it down at the end of the test.
func Start(t testing.TB, cfg *gateway.Config) *Gateway {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("harness: %v", err)
	}
	logger := LoggerAt(t, cfg.Log.Level).With("gateway", cfg.Listen)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, cfg, logger)
	if err != nil {
		t.Fatalf("harness: start gateway: %v", err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Grace)
		defer cancel()
		if err := g.Shutdown(sctx); err != nil {
			t.Errorf("harness: gateway shutdown: %v", err)
		}
	})
	if err := g.WaitReady(ctx); err != nil {
		t.Fatalf("harness: gateway not ready: %v", err)
	}
	WaitReady(t, g.URL())
	return &Gateway{Gateway: g, Config: cfg}
}

// StartEmbedded starts one gateway in embedded mode. modify may change the
// test config first.
func StartEmbedded(t testing.TB, modify func(*gateway.Config)) *Gateway {
	t.Helper()
	cfg := Config(t)
	if modify != nil {
		modify(cfg)
	}
	return Start(t, cfg)
}

// StartN starts n gateways against natsURL (comma-separated).
func StartN(t testing.TB, n int, natsURL string, modify func(*gateway.Config)) []*Gateway {
	t.Helper()
	out := make([]*Gateway, n)
	for i := range out {
		cfg := Config(t)
		cfg.NATS.URL = natsURL
		if modify != nil {
			modify(cfg)
		}
		out[i] = Start(t, cfg)
	}
	return out
}

// StartOnCluster starts a 3-node JetStream cluster and n gateways with
// jetstream.replicas 3, each gateway given every node's URL.
func StartOnCluster(t testing.TB, n int, modify func(*gateway.Config)) (*natstest.Cluster, []*Gateway) {
	t.Helper()
	c := natstest.NewCluster(t, 3)
	gws := StartN(t, n, c.URLs(), func(cfg *gateway.Config) {
		cfg.JetStream.Replicas = 3
		if modify != nil {
			modify(cfg)
		}
	})
	return c, gws
}

// WaitReady polls base+/readyz until it answers 200.
func WaitReady(t testing.TB, base string) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, func() error { return checkReady(base) })
}

func checkReady(base string) error {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.StatusCode}
	}
	return nil
}

// IsReady reports whether base+/readyz answers 200 right now.
func IsReady(base string) error { return checkReady(base) }

type statusError struct{ code int }

func (e *statusError) Error() string { return "readyz status " + http.StatusText(e.code) }

// Logger returns a slog logger writing through t.Logf until the test ends
// (late log lines from background goroutines are dropped, not panicked on).
func Logger(t testing.TB) *slog.Logger { return LoggerAt(t, "debug") }

// LoggerAt is Logger at level ("debug", "info", "warn", "error"), so a
// benchmark that sets its gateway's log level to "error" does not pay for
// a debug line per request.
func LoggerAt(t testing.TB, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelDebug
	}
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
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

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
