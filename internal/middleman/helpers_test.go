package middleman_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/natstest"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(memClientEnv); spec != "" {
		os.Exit(memClients(spec))
	}
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// Keys configured on every test gateway.
const (
	svcKey   = "svc-key"
	svc2Key  = "svc-key-2"
	cliKey   = "cli-key"
	superKey = "super-key"
)

const ioTimeout = 15 * time.Second

func mmConfig(modify func(*gateway.Config)) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.Log.Level = "info"
		c.Middleman.ServiceKeys = []string{svcKey, svc2Key}
		c.Middleman.ClientKeys = []string{cliKey}
		c.Middleman.SuperKeys = []string{superKey}
		if modify != nil {
			modify(c)
		}
	}
}

// twoGateways starts one nats-server and two gateways on it.
func twoGateways(t testing.TB, modify func(*gateway.Config)) (*harness.Gateway, *harness.Gateway) {
	t.Helper()
	srv := natstest.RunServer(t, nil)
	gws := harness.StartN(t, 2, srv.URL(), mmConfig(modify))
	return gws[0], gws[1]
}

func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + middleman.Route }

// client is a middleman client over a real WebSocket.
type client struct {
	t   testing.TB
	ws  *websocket.Conn
	cid string
}

// rawDial opens the WebSocket without the handshake.
func rawDial(t testing.TB, base string, h http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL(base), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	ws.SetReadLimit(8 << 20)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return ws
}

// dial connects and completes the handshake with key.
func dial(t testing.TB, gw *harness.Gateway, key string) *client {
	t.Helper()
	c := &client{t: t, ws: rawDial(t, gw.URL(), nil)}
	c.writeRaw(key)
	if got := c.readRaw(); got != "MM OK" {
		t.Fatalf("handshake: got %q, want MM OK", got)
	}
	c.cid = c.readRaw()
	if c.cid == "" {
		t.Fatal("handshake: empty cid")
	}
	return c
}

func (c *client) writeRaw(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) readRaw() string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		c.t.Fatalf("read: binary message")
	}
	return string(data)
}

// send writes one frame; headers are name, value pairs.
func (c *client) send(cmd, key, body string, headers ...string) {
	c.t.Helper()
	f := &middleman.Frame{Cmd: cmd, Key: key, Body: []byte(body)}
	for i := 0; i+1 < len(headers); i += 2 {
		f.Set(headers[i], headers[i+1])
	}
	c.writeRaw(string(f.Bytes()))
}

// next reads and parses one frame.
func (c *client) next() *middleman.Frame {
	c.t.Helper()
	raw := c.readRaw()
	f, err := middleman.Parse([]byte(raw))
	if err != nil {
		c.t.Fatalf("parse %q: %v", raw, err)
	}
	return f
}

// expect reads one frame and checks its command, key and body.
func (c *client) expect(cmd, key, body string) *middleman.Frame {
	c.t.Helper()
	f := c.next()
	if f.Cmd != cmd || f.Key != key || string(f.Body) != body {
		c.t.Fatalf("got %s %q body %q, want %s %q body %q", f.Cmd, f.Key, f.Body, cmd, key, body)
	}
	return f
}

// expectError reads one frame and checks it is PUB ERROR with body.
func (c *client) expectError(body string) {
	c.t.Helper()
	c.expect("PUB", "ERROR", body)
}

// sync returns every frame received before the server processed a probe
// sent now: the read loop is sequential, so everything the server did for
// earlier frames (subscriptions included) is done when the probe answers.
func (c *client) sync() []*middleman.Frame {
	c.t.Helper()
	c.send("NOP", "sync", "")
	var before []*middleman.Frame
	for {
		f := c.next()
		if f.Cmd == "PUB" && f.Key == "ERROR" && string(f.Body) == "Unknown command NOP sync" {
			return before
		}
		before = append(before, f)
	}
}

// expectQuiet checks nothing arrived before a probe round trip.
func (c *client) expectQuiet() {
	c.t.Helper()
	if got := c.sync(); len(got) != 0 {
		c.t.Fatalf("unexpected frames: %s %q %q", got[0].Cmd, got[0].Key, got[0].Body)
	}
}

// closeStatus reads until the connection ends and returns its close code.
func closeStatus(t testing.TB, ws *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("connection not closed within %s", ioTimeout)
			}
			return websocket.CloseStatus(err)
		}
	}
}
