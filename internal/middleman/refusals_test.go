package middleman_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/natstest"
)

func TestRequestTimeoutAndResponderLoss(t *testing.T) {
	a, b := twoGateways(t, func(c *gateway.Config) { c.Middleman.RequestTimeout = 700 * time.Millisecond })
	svc := dial(t, a, svcKey)
	cli := dial(t, b, cliKey)
	svc.send("EREQ", "slow", "")
	svc.sync()

	cli.send("REQ", "slow", "never answered")
	svc.expect("REQ", "slow", "never answered")
	start := time.Now()
	cli.expectError("Timeout REQ slow")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %s", d)
	}
	// A late RES after the timeout is dropped.
	cli.expectQuiet()

	// Responder disconnects mid-request: the requester hears at once.
	long := dial(t, a, svcKey)
	long.send("EREQ", "gone", "")
	long.sync()
	cli2 := dial(t, b, cliKey)
	cli2.send("REQ", "gone", "q")
	long.expect("REQ", "gone", "q")
	_ = long.ws.Close(websocket.StatusNormalClosure, "bye")
	cli2.expectError("Responder disconnected REQ gone")
	// ...and gets no more requests: the key is enabled, nobody serves it.
	cli2.send("REQ", "gone", "q2")
	cli2.expectError("No responder for REQ gone")
}

func TestInterruptAcrossGateways(t *testing.T) {
	a, b := twoGateways(t, nil)
	svc := dial(t, a, svcKey)
	cli := dial(t, b, cliKey)
	local := dial(t, a, cliKey)
	svc.send("SUB", "who", "")
	svc.send("EPUB", "who", "")
	svc.sync()

	svc.send("INT", "UID", "", "Forcid", cli.cid, "Setuid", "alice")
	svc.send("INT", "UID", "", "Forcid", local.cid, "Setuid", "bob")
	svc.expectQuiet()
	natstest.Eventually(t, ioTimeout, func() error {
		cli.send("PUB", "who", "me")
		f := svc.expect("PUB", "who", "me")
		if f.Get("Uid") != "alice" {
			return errString("uid " + f.Get("Uid"))
		}
		return nil
	})
	local.send("PUB", "who", "me")
	if f := svc.expect("PUB", "who", "me"); f.Get("Uid") != "bob" {
		t.Fatalf("local uid %q", f.Get("Uid"))
	}

	gw, _, _ := strings.Cut(cli.cid, "-")
	for _, forcid := range []string{gw + "-999999", "Nosuchgateway-1", "garbage", "a.b-1"} {
		svc.send("INT", "UID", "", "Forcid", forcid, "Setuid", "x")
		svc.expectError("Unknown Forcid INT UID")
	}
	svc.send("INT", "UID", "", "Setuid", "x")
	svc.expectError("Missing header INT UID")
	svc.send("INT", "UID", "", "Forcid", cli.cid)
	svc.expectError("Missing header INT UID")
	svc.send("INT", "GID", "", "Forcid", cli.cid, "Setuid", "x")
	svc.expectError("Unknown command INT GID")
	cli.send("INT", "UID", "", "Forcid", local.cid, "Setuid", "mallory")
	cli.expectError("Not trusted INT UID")
	local.send("PUB", "who", "still bob")
	if f := svc.expect("PUB", "who", "still bob"); f.Get("Uid") != "bob" {
		t.Fatalf("untrusted INT changed uid to %q", f.Get("Uid"))
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestUntrustedRefusals(t *testing.T) {
	a, b := twoGateways(t, nil)
	svc := dial(t, a, svcKey)
	cli := dial(t, b, cliKey)
	other := dial(t, a, cliKey)
	svc.send("SUB", "k", "")
	svc.sync()
	for _, cmd := range []string{"EPUB", "ESUB", "EREQ", "RES"} {
		cli.send(cmd, "k", "")
		cli.expectError("Not trusted " + cmd + " k")
	}
	// None of them had an effect.
	other.send("PUB", "k", "x")
	other.expectError("Not trusted PUB k")
	other.send("SUB", "k", "")
	other.expectError("Not trusted SUB k")
	other.send("REQ", "k", "")
	other.expectError("Not trusted REQ k")
	svc.expectQuiet()
	// Enabling one command does not enable the others.
	svc.send("EPUB", "k", "")
	svc.sync()
	other.send("SUB", "k", "")
	other.expectError("Not trusted SUB k")
	other.send("REQ", "k", "")
	other.expectError("Not trusted REQ k")
	other.send("PUB", "k", "ok now")
	svc.expect("PUB", "k", "ok now")
}

func TestMalformedFrames(t *testing.T) {
	gw := harness.StartEmbedded(t, mmConfig(func(c *gateway.Config) { c.Middleman.MaxFrame = 4 << 10 }))
	c := dial(t, gw, svcKey)
	for raw, want := range map[string]string{
		"PUB":                               "Malformed frame: missing key after command",
		"pub k\r\n\r\n.\r\n":                "Malformed frame: invalid command",
		"PUB k\r\n\r\nno terminator":        "Malformed frame: missing terminator line '.'",
		"PUB k\r\nno colon\r\n\r\n":         "Malformed frame: header line without ':'",
		"PUB k\r\n\r\na\r\n.\r\nb\r\n.\r\n": "Malformed frame: data after terminator line '.'",
		"FOO k":                             "Unknown command FOO k",
	} {
		c.writeRaw(raw)
		c.expectError(want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, []byte("PUB k\r\n\r\n.\r\n")); err != nil {
		t.Fatal(err)
	}
	c.expectError("Binary frames are not supported")
	// The connection is still usable.
	c.send("SUB", "k", "")
	c.send("PUB", "k", "alive")
	c.expect("PUB", "k", "alive")
	// Over max_frame: closed with 1009, the gateway lives on.
	_ = c.ws.Write(ctx, websocket.MessageText, []byte("PUB k\r\n\r\n"+strings.Repeat("x", 5<<10)+"\r\n.\r\n"))
	if got := closeStatus(t, c.ws); got != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v, want 1009", got)
	}
	dial(t, gw, svcKey).expectQuiet()
}

// TestPythonServiceBytes sends exactly what a Python service of the
// original writes: LF line ends and a CRLF dot terminator.
func TestPythonServiceBytes(t *testing.T) {
	a, b := twoGateways(t, nil)
	svc := dial(t, a, svcKey)
	cli := dial(t, b, svcKey)
	cli.send("SUB", "py", "")
	cli.sync()
	svc.writeRaw("PUB py\nContent-Type: text/plain\nx-trace:abc\n\nline one\n..dot line\nline three\r\n.\r\n")
	raw := cli.readRaw()
	f, err := middleman.Parse([]byte(raw))
	if err != nil || string(f.Body) != "line one\n.dot line\nline three" {
		t.Fatalf("parse %q: %v", raw, err)
	}
	if f.Get("Content-Type") != "text/plain" || f.Get("X-Trace") != "abc" {
		t.Fatalf("headers %+v", f.Header)
	}
	// What the gateway sent reads like the original Go clients read it.
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(raw)))
	line, err := r.ReadLine()
	if err != nil || line != "PUB py" {
		t.Fatalf("command line %q %v", line, err)
	}
	h, err := r.ReadMIMEHeader()
	if err != nil || h.Get("Cid") != svc.cid || h.Get("Content-Type") != "text/plain" {
		t.Fatalf("MIME headers %v %v", h, err)
	}
	body, err := io.ReadAll(r.DotReader())
	if err != nil || string(body) != "line one\n.dot line\nline three\n" {
		t.Fatalf("dot-reader body %q %v", body, err)
	}
}

func TestTrustSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() *harness.Gateway {
		return harness.StartEmbedded(t, mmConfig(func(c *gateway.Config) { c.DataDir = dir }))
	}
	gw := start()
	svc := dial(t, gw, svcKey)
	for _, cmd := range []string{"EPUB", "ESUB", "EREQ"} {
		svc.send(cmd, "kept", "")
	}
	svc.expectQuiet()
	// The client keeps reading while the gateway stops, as a real one does.
	status := make(chan websocket.StatusCode, 1)
	go func() {
		_, _, err := svc.ws.Read(context.Background())
		status <- websocket.CloseStatus(err)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := <-status; got != websocket.StatusGoingAway {
		t.Fatalf("shutdown close status %v, want 1001", got)
	}

	gw = start()
	cli := dial(t, gw, cliKey)
	cli.send("SUB", "kept", "")
	cli.send("PUB", "kept", "still enabled")
	cli.expect("PUB", "kept", "still enabled")
	cli.send("REQ", "kept", "")
	cli.expectError("No responder for REQ kept")
	cli.send("PUB", "not kept", "")
	cli.expectError("Not trusted PUB not kept")
}

func TestSlowConsumer(t *testing.T) {
	gw := harness.StartEmbedded(t, mmConfig(func(c *gateway.Config) { c.Middleman.MaxFrame = 16 << 10 }))
	slow := dial(t, gw, svcKey)
	slow.send("SUB", "flood", "")
	slow.sync()
	pub := dial(t, gw, svcKey)
	body := strings.Repeat("y", 8<<10)
	metric := "switchboard_middleman_slow_consumer_closes_total 1"
	for i := 0; i < 20000 && !strings.Contains(scrape(t, gw), metric); i++ {
		for range 50 {
			pub.send("PUB", "flood", body)
		}
	}
	if !strings.Contains(scrape(t, gw), metric) {
		t.Fatal("slow consumer never detected")
	}
	if got := closeStatus(t, slow.ws); got != websocket.StatusPolicyViolation {
		t.Fatalf("slow consumer close status %v, want 1008", got)
	}
	pub.expectQuiet()
}

func scrape(t testing.TB, gw *harness.Gateway) string {
	t.Helper()
	resp, err := http.Get(gw.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestClusterReplicas3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node JetStream cluster")
	}
	cluster, gws := harness.StartOnCluster(t, 2, mmConfig(nil))
	svc := dial(t, gws[0], svcKey)
	cli := dial(t, gws[1], cliKey)
	svc.send("EREQ", "c", "")
	svc.send("ESUB", "c", "")
	svc.sync()
	cli.send("SUB", "c", "")
	cli.sync()
	// The gateways may sit on different nodes: interest crosses the
	// cluster's routes asynchronously, so the first messages may find none.
	natstest.Eventually(t, ioTimeout, func() error {
		svc.send("PUB", "c", "hi")
		for _, f := range cli.sync() {
			if f.Cmd == "PUB" && f.Key == "c" && string(f.Body) == "hi" {
				return nil
			}
		}
		return errString("PUB not delivered yet")
	})
	// The service answers every REQ from its own goroutine.
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			_, data, err := svc.ws.Read(context.Background())
			if err != nil {
				return
			}
			if f, err := middleman.Parse(data); err == nil && f.Cmd == "REQ" {
				res := middleman.Frame{Cmd: "RES", Key: f.Key, Body: []byte("a")}
				res.Set("Rid", f.Get("Rid"))
				_ = svc.ws.Write(context.Background(), websocket.MessageText, res.Bytes())
			}
		}
	}()
	t.Cleanup(func() {
		_ = svc.ws.CloseNow()
		<-served
	})
	natstest.Eventually(t, ioTimeout, func() error {
		cli.send("REQ", "c", "q")
		for {
			switch f := cli.next(); {
			case f.Cmd == "RES" && string(f.Body) == "a":
				return nil
			case f.Cmd == "PUB" && f.Key == "ERROR":
				return errString(string(f.Body)) // no responder yet: retry
			}
		}
	})
	// Let every replica of the trust bucket catch up before the cluster
	// stops: a node stopped mid-recovery leaks its store's goroutines.
	cluster.WaitReady()
}
