package middleman

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/protocol"
)

// fakeConn is an in-memory Conn: frames pushed to in are read, frames
// written land in out.
type fakeConn struct {
	in     chan []byte
	out    chan []byte
	once   sync.Once
	closed chan struct{}
	code   int
	pings  atomic.Int32
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte, 16), out: make(chan []byte, 64), closed: make(chan struct{})}
}

func (c *fakeConn) NextReader() (bool, io.Reader, error) {
	select {
	case b := <-c.in:
		return true, bytes.NewReader(b), nil
	case <-c.closed:
		return false, nil, io.EOF
	}
}

func (c *fakeConn) WriteBatch(ctx context.Context, msgs [][]byte) error {
	for _, p := range msgs {
		select {
		case c.out <- p:
		case <-c.closed:
			return io.ErrClosedPipe
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (c *fakeConn) Ping(context.Context) error {
	c.pings.Add(1)
	return nil
}
func (c *fakeConn) SetReadLimit(int64) {}

func (c *fakeConn) Close(code int, _ string) error {
	c.once.Do(func() { c.code = code; close(c.closed) })
	return nil
}

func (c *fakeConn) recv(t *testing.T) string {
	t.Helper()
	select {
	case b := <-c.out:
		return string(b)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
		return ""
	}
}

func newTestHub(t *testing.T, cfg Config) (*Hub, *nats.Conn) {
	t.Helper()
	srv := natstest.RunServer(t, nil)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	trust, err := OpenTrust(ctx, js, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(trust.Close)
	cfg.ServiceKeys = []string{"svc"}
	cfg.ClientKeys = []string{"cli"}
	h, err := NewHub(nc, trust, cfg, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, nc
}

func TestHandshakeTimeout(t *testing.T) {
	h, _ := newTestHub(t, Config{HandshakeTimeout: 100 * time.Millisecond})
	c := newFakeConn()
	start := time.Now()
	if err := h.Serve(context.Background(), c); !errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("Serve = %v, want ErrHandshakeTimeout", err)
	}
	if c.code != ClosePolicy || time.Since(start) > 5*time.Second {
		t.Fatalf("closed with %d after %s", c.code, time.Since(start))
	}
}

// TestSessionReleasesEverything checks that a session's subscriptions,
// responder registrations, pending requests and goroutines end with it.
func TestSessionReleasesEverything(t *testing.T) {
	h, nc := newTestHub(t, Config{})
	baseSubs := nc.NumSubscriptions()
	c := newFakeConn()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, c) }()
	c.in <- []byte("svc")
	if got := c.recv(t); got != "MM OK" {
		t.Fatalf("handshake %q", got)
	}
	cid := c.recv(t)
	for _, f := range []string{"SUB a", "SUB b", "SUB a", "EREQ r", "REQ r\r\n\r\nq\r\n.\r\n", "REQ none"} {
		c.in <- []byte(f)
	}
	if got := c.recv(t); !bytes.Contains([]byte(got), []byte("Rid: "+cid+"-1")) {
		t.Fatalf("own REQ: %q", got)
	}
	if got := c.recv(t); got != "PUB ERROR\r\n\r\nNo responder for REQ none\r\n.\r\n" {
		t.Fatalf("REQ none: %q", got)
	}
	if st := h.stats(); st.sessions != 1 || st.routes != 3 || nc.NumSubscriptions() != baseSubs+3 {
		t.Fatalf("while connected: %+v, nats subs %d (base %d)", st, nc.NumSubscriptions(), baseSubs)
	}
	cancel() // gateway shutdown
	if err := <-done; err == nil {
		t.Fatal("Serve returned nil after shutdown")
	}
	if c.code != CloseGoingAway {
		t.Fatalf("close code %d, want 1001", c.code)
	}
	if st := h.stats(); st.sessions != 0 || st.routes != 0 || nc.NumSubscriptions() != baseSubs {
		t.Fatalf("after close: %+v, nats subs %d (base %d)", st, nc.NumSubscriptions(), baseSubs)
	}
}

func TestPingInterval(t *testing.T) {
	h, _ := newTestHub(t, Config{PingInterval: 20 * time.Millisecond})
	c := newFakeConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, c) }()
	c.in <- []byte("cli")
	natstest.Eventually(t, 10*time.Second, func() error {
		if c.pings.Load() < 3 {
			return errors.New("fewer than 3 pings")
		}
		return nil
	})
	cancel()
	<-done
}

func TestHandshakeEndsOnShutdown(t *testing.T) {
	h, _ := newTestHub(t, Config{})
	c := newFakeConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, c) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, protocol.ErrShuttingDown) || c.code != CloseGoingAway {
			t.Fatalf("Serve = %v, close code %d; want shutting down, 1001", err, c.code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handshake did not end on shutdown")
	}
}
