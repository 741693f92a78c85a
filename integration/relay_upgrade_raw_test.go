package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/integration/harness"
)

// rawUpstream switches to the made-up protocol "count/1" on request,
// with a hijacked connection. On /count it reads until EOF, then writes
// "got N" and closes (half-close both ways). On /hold it neither reads
// nor writes until release is closed, then reads everything and writes
// send bytes. Anything else is 426.
type rawUpstream struct {
	*httptest.Server
	release chan struct{}
	read    atomic.Int64
	wrote   atomic.Int64
	send    int64
}

// countWriter counts what it writes.
type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func newRawUpstream(t testing.TB, send int64) *rawUpstream {
	u := &rawUpstream{release: make(chan struct{}), send: send}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "count/1" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			w.WriteHeader(http.StatusUpgradeRequired)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: count/1\r\nX-Count: yes\r\n\r\n")
		switch r.URL.Path {
		case "/count":
			n, _ := io.Copy(io.Discard, brw.Reader)
			fmt.Fprintf(conn, "got %d", n)
		case "/hold":
			<-u.release
			done := make(chan struct{})
			go func() {
				defer close(done)
				n, _ := io.Copy(io.Discard, brw.Reader)
				u.read.Add(n)
			}()
			if _, err := io.CopyN(countWriter{conn, &u.wrote}, zeros{}, u.send); err != nil {
				t.Errorf("target write: %v", err)
			}
			conn.(*net.TCPConn).CloseWrite()
			<-done
		}
	}))
	t.Cleanup(u.Close)
	t.Cleanup(u.Release)
	return u
}

var releaseMu sync.Mutex

// Release lets /hold connections proceed (once).
func (u *rawUpstream) Release() {
	releaseMu.Lock()
	defer releaseMu.Unlock()
	select {
	case <-u.release:
	default:
		close(u.release)
	}
}

// dialUpgrade opens a raw upgraded connection to base+path.
func dialUpgrade(t testing.TB, base, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: count/1\r\n\r\n", path)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "count/1" || resp.Header.Get("X-Count") != "yes" {
		t.Fatalf("upgrade: %v %+v", err, resp)
	}
	return conn, br
}

// TestRelayUpgradeHalfClose: a protocol other than WebSocket, whose
// client half-closes its side: the target reads EOF, answers, and its
// close reaches the client as EOF.
func TestRelayUpgradeHalfClose(t *testing.T) {
	up := newRawUpstream(t, 0)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"raw": up.URL}))
	conn, br := dialUpgrade(t, gw.URL(), "/relay/raw/count")
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	const n = 3<<20 + 17
	if _, err := io.CopyN(conn, zeros{}, n); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(br)
	if err != nil || string(b) != fmt.Sprintf("got %d", n) {
		t.Fatalf("answer %q %v", b, err)
	}
}

// heapInUse is the heap in use after a GC.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// waitStalled waits until *n stops growing (two samples 300 ms apart)
// and returns it.
func waitStalled(t testing.TB, n *atomic.Int64) int64 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := n.Load()
	for time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		cur := n.Load()
		if cur == last && cur > 0 {
			return cur
		}
		last = cur
	}
	t.Fatalf("never stalled (%d bytes)", n.Load())
	return 0
}

// TestRelayUpgradeSlowConsumer: a side that does not read stalls the
// writer on the other side with a bounded amount in flight, and memory
// stays flat; once it reads, everything arrives. Both directions.
func TestRelayUpgradeSlowConsumer(t *testing.T) {
	const total = 256 << 20
	up := newRawUpstream(t, total)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"raw": up.URL}))
	conn, br := dialUpgrade(t, gw.URL(), "/relay/raw/hold")
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(120 * time.Second))
	base := heapInUse()

	// Upward: the target does not read.
	var wrote atomic.Int64
	wdone := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for wrote.Load() < total {
			n, err := conn.Write(buf)
			wrote.Add(int64(n))
			if err != nil {
				wdone <- err
				return
			}
		}
		wdone <- conn.(*net.TCPConn).CloseWrite()
	}()
	stalled := waitStalled(t, &wrote)
	grown := heapInUse() - base
	t.Logf("upward: writer stalled after %d MiB, heap +%d MiB", stalled>>20, grown>>20)
	if stalled > 64<<20 || grown > 32<<20 {
		t.Fatalf("writer stalled after %d bytes, heap grew %d bytes", stalled, grown)
	}

	// Downward: the client does not read while the target writes.
	up.Release()
	if err := <-wdone; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for up.read.Load() < total && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if up.read.Load() != total {
		t.Fatalf("target read %d of %d bytes", up.read.Load(), total)
	}
	// The target writes total bytes; nobody reads them yet.
	stalled = waitStalled(t, &up.wrote)
	grown = heapInUse() - base
	t.Logf("downward: target stalled after %d MiB, heap +%d MiB", stalled>>20, grown>>20)
	if stalled > 64<<20 || grown > 32<<20 {
		t.Fatalf("target stalled after %d bytes, heap grew %d bytes", stalled, grown)
	}
	n, err := io.Copy(io.Discard, br)
	if err != nil || n != total {
		t.Fatalf("client read %d of %d bytes: %v", n, total, err)
	}
}

// TestRelayWebSocketConcurrent: many WebSockets open at once through one
// gateway, each echoing, with the heap per connection bounded.
func TestRelayWebSocketConcurrent(t *testing.T) {
	n := 500
	if raceEnabled {
		n = 120 // the race detector allows 8128 goroutines
	}
	up := newWSUpstream(t)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ws": up.URL}))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	base := heapInUse()
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, _, err := websocket.Dial(ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
			if err != nil {
				errs <- fmt.Errorf("dial %d: %w", i, err)
				return
			}
			conns[i] = c
			msg := fmt.Sprintf("hello %d", i)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				errs <- err
				return
			}
			if _, data, err := c.Read(ctx); err != nil || string(data) != msg {
				errs <- fmt.Errorf("echo %d: %q %v", i, data, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	grown := heapInUse() - base
	t.Logf("%d WebSockets open: heap +%d MiB (%d KiB each, upstream, client and both relay sides)", n, grown>>20, grown/int64(n)>>10)
	if grown > int64(n)*256<<10 {
		t.Fatalf("heap grew %d bytes for %d connections", grown, n)
	}
	for _, c := range conns {
		c.Close(websocket.StatusNormalClosure, "")
	}
}
