package middleman_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// disconnectBound is how long a gateway may take to notice that idle
// clients vanished and to free their sessions (README, Middleman
// "Implementation notes"): a parked connection is in the gateway's epoll
// set, which reports the reset at once.
const disconnectBound = 10 * time.Second

// rawWS is a client connection speaking frames by hand, with no goroutine.
type rawWS struct {
	net.Conn
	br *bufio.Reader
}

func openRaw(t testing.TB, gw *harness.Gateway, key string) *rawWS {
	t.Helper()
	c, err := wsHandshake(gw.Addr(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &rawWS{Conn: c, br: bufio.NewReader(c)}
}

// writeFrame sends one masked client frame.
func (c *rawWS) writeFrame(t testing.TB, fin bool, op byte, payload []byte) {
	t.Helper()
	b := []byte{op}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, x := range payload {
		b = append(b, x^mask[i&3])
	}
	_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readFrame reads one unmasked server frame.
func (c *rawWS) readFrame(t testing.TB) (byte, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		t.Fatal(err)
	}
	return h[0] & 0x0f, p
}

// closeCode reads frames up to the close frame and returns its code.
func (c *rawWS) closeCode(t testing.TB) int {
	t.Helper()
	for {
		op, p := c.readFrame(t)
		if op == 0x8 {
			if len(p) < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

// gatewayMetric is the value of one sample line of the gateway's /metrics.
func gatewayMetric(t testing.TB, gw *harness.Gateway, sample string) float64 {
	t.Helper()
	resp, err := http.Get(gw.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestIdleConnectionsPark opens 1,000 authenticated connections and checks
// that, idle, they hold no goroutine each; that a parked connection still
// answers a ping, takes a message split over frames with a ping between
// them, and is closed with 1002 for an unmasked frame; that the sessions
// of clients that vanished (TCP reset) are gone within disconnectBound;
// and that a shutdown closes every parked connection with 1001.
func TestIdleConnectionsPark(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	raiseFDLimit(t)
	gw := harness.StartEmbedded(t, mmConfig(func(c *gateway.Config) { c.Shutdown.Grace = 30 * time.Second }))
	g0 := runtime.NumGoroutine()
	conns := make([]*rawWS, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				conns[i] = openRaw(t, gw, svcKey)
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	trusted := `switchboard_middleman_connections{trust="trusted"}`
	natstest.Eventually(t, disconnectBound, func() error {
		if got := gatewayMetric(t, gw, trusted); got != float64(n) {
			return fmt.Errorf("%v connections, want %d", got, n)
		}
		if g := runtime.NumGoroutine() - g0; g > n/10 {
			return fmt.Errorf("%d goroutines more for %d idle connections", g, n)
		}
		return nil
	})

	// A parked connection answers a ping and serves a fragmented message
	// with a ping in the middle, in order.
	c := conns[1]
	c.writeFrame(t, true, 0x9, []byte("hi"))
	if op, p := c.readFrame(t); op != 0xA || string(p) != "hi" {
		t.Fatalf("ping answered with op %x %q", op, p)
	}
	c.writeFrame(t, true, 0x1, []byte("SUB park-test"))
	msg := []byte("PUB park-test\n\nhello\n.")
	c.writeFrame(t, false, 0x1, msg[:6])
	c.writeFrame(t, true, 0x9, []byte("mid"))
	c.writeFrame(t, true, 0x0, msg[6:])
	if op, p := c.readFrame(t); op != 0xA || string(p) != "mid" {
		t.Fatalf("ping inside a message answered with op %x %q", op, p)
	}
	if op, p := c.readFrame(t); op != 0x1 || !strings.Contains(string(p), "hello") {
		t.Fatalf("fragmented PUB to a subscribed key: op %x %q", op, p)
	}
	// An unmasked frame is a protocol error.
	u := conns[3]
	_ = u.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := u.Write([]byte{0x81, 0x01, 'x'}); err != nil {
		t.Fatal(err)
	}
	if code := u.closeCode(t); code != 1002 {
		t.Fatalf("unmasked frame: close %d, want 1002", code)
	}
	u.Close()
	conns[3] = nil

	// Cut every even client with a reset.
	cut := time.Now()
	for i := 0; i < n; i += 2 {
		_ = conns[i].Conn.(*net.TCPConn).SetLinger(0)
		_ = conns[i].Close()
		conns[i] = nil
	}
	live := n/2 - 1 // conns[3] closed above
	natstest.Eventually(t, disconnectBound, func() error {
		if got := gatewayMetric(t, gw, trusted); got != float64(live) {
			return fmt.Errorf("%v connections, want %d", got, live)
		}
		if g := runtime.NumGoroutine() - g0; g > n/10 {
			return fmt.Errorf("%d goroutines more for %d idle connections", g, live)
		}
		return nil
	})
	t.Logf("%d clients cut: sessions freed in %v", n/2, time.Since(cut).Round(time.Millisecond))

	// Shutdown closes every parked connection with 1001; the clients
	// answer the close as real ones do.
	done := make(chan error, 1)
	stopped := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- gw.Shutdown(ctx)
	}()
	for i, c := range conns {
		if c == nil {
			continue
		}
		if code := c.closeCode(t); code != 1001 {
			t.Fatalf("conn %d: close %d at shutdown, want 1001", i, code)
		}
		c.writeFrame(t, true, 0x8, []byte{0x03, 0xe9})
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("shutdown closed %d parked connections in %v", live, time.Since(stopped).Round(time.Millisecond))
}

// TestParkedKeepalive: pings reach parked connections; one whose client
// answers them stays open and served, one whose client does not is closed
// with 1008 once the write timeout passed after a ping.
func TestParkedKeepalive(t *testing.T) {
	gw := harness.StartEmbedded(t, mmConfig(func(c *gateway.Config) {
		c.Middleman.PingInterval = 100 * time.Millisecond
		c.Middleman.WriteTimeout = 500 * time.Millisecond
	}))
	alive, silent := openRaw(t, gw, svcKey), openRaw(t, gw, svcKey)
	defer alive.Close()
	defer silent.Close()
	for range 3 {
		op, p := alive.readFrame(t)
		if op != 0x9 {
			t.Fatalf("got op %x %q, want a ping", op, p)
		}
		alive.writeFrame(t, true, 0xA, p)
	}
	if code := silent.closeCode(t); code != 1008 {
		t.Fatalf("silent client: close %d, want 1008", code)
	}
	alive.writeFrame(t, true, 0x1, []byte("SUB keepalive"))
	alive.writeFrame(t, true, 0x1, []byte("PUB keepalive\n\nstill here\n."))
	for {
		op, p := alive.readFrame(t)
		if op == 0x9 {
			alive.writeFrame(t, true, 0xA, p)
			continue
		}
		if op != 0x1 || !strings.Contains(string(p), "still here") {
			t.Fatalf("answering client: op %x %q", op, p)
		}
		return
	}
}

// TestRefusedKeyClosesCleanly: a refused key ends with the close
// handshake. Once the client answers the gateway's close frame the gateway
// closes the TCP connection at once: the client reads EOF, not a reset
// after the gateway's whole close wait (5 s) with its reply unread.
func TestRefusedKeyClosesCleanly(t *testing.T) {
	gw := harness.StartEmbedded(t, mmConfig(nil))
	conn, err := wsUpgrade(gw.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := &rawWS{Conn: conn, br: bufio.NewReader(conn)}
	defer c.Close()
	c.writeFrame(t, true, 0x1, []byte("not-a-configured-key"))
	code := c.closeCode(t)
	start := time.Now()
	c.writeFrame(t, true, 0x8, binary.BigEndian.AppendUint16(nil, uint16(code)))
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the close handshake (code %d): %v, want EOF", code, err)
	}
	if d := time.Since(start); d >= 4*time.Second {
		t.Fatalf("the gateway closed %s after the client's close frame, want at once", d)
	}
}

// TestEmptyFragmentsBounded: a message kept going with empty
// continuation frames counts each fragment's header against the frame
// limit, so it ends with 1009 instead of holding the connection forever.
func TestEmptyFragmentsBounded(t *testing.T) {
	gw := harness.StartEmbedded(t, mmConfig(func(c *gateway.Config) { c.Middleman.MaxFrame = 4 << 10 }))
	c := openRaw(t, gw, svcKey)
	defer c.Close()
	c.writeFrame(t, false, 0x1, []byte("P"))
	empty := []byte{0x00, 0x80, 1, 2, 3, 4} // a masked, empty, non-final continuation
	go func() {
		// More fragments than the limit allows; the gateway closes before
		// the end, so the writes may fail.
		_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, _ = c.Write(bytes.Repeat(empty, 2000))
	}()
	if code := c.closeCode(t); code != 1009 {
		t.Fatalf("close code %d, want 1009", code)
	}
}

// TestCloseReason: the reason of a client's close frame must be UTF-8
// (RFC 6455 §7.1.6). A valid one is answered with the client's code; one
// that is not fails the connection with 1007, like any other invalid text.
func TestCloseReason(t *testing.T) {
	gw := harness.StartEmbedded(t, mmConfig(nil))
	for _, tc := range []struct {
		name   string
		reason []byte
		want   int
	}{
		{"utf8", []byte("bye ✓"), 1000},
		{"not utf8", []byte{'b', 0xff, 0xfe}, 1007},
		{"cut rune", []byte("✓")[:2], 1007},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := openRaw(t, gw, svcKey)
			defer c.Close()
			c.writeFrame(t, true, 0x8, append(binary.BigEndian.AppendUint16(nil, 1000), tc.reason...))
			if code := c.closeCode(t); code != tc.want {
				t.Fatalf("close code %d, want %d", code, tc.want)
			}
		})
	}
}
