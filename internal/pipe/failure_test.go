package pipe_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// TestDisconnectWhileWaiting checks, on each side, that a party that goes
// away leaves the queue at once and is never paired.
func TestDisconnectWhileWaiting(t *testing.T) {
	e := twoOnOneServer(t, nil)
	bg := context.Background()

	ctx, cancel := context.WithCancel(bg)
	gone := consume(ctx, e.url(0), "dc", "c")
	e.awaitWaiting(t, "dc", "c", subjects.PipeConsumer, 1)
	cancel()
	<-gone
	e.awaitWaiting(t, "dc", "c", subjects.PipeConsumer, 0)
	live := consume(bg, e.url(0), "dc", "c")
	e.awaitWaiting(t, "dc", "c", subjects.PipeConsumer, 1)
	if p := wait(t, produce(bg, e.url(1), "dc", "c", []byte("for the live one"), "")); p.status != http.StatusOK {
		t.Fatalf("producer: %d %s", p.status, p.body)
	}
	if c := wait(t, live); string(c.body) != "for the live one" {
		t.Fatalf("live consumer got %d %q", c.status, c.body)
	}

	ctx, cancel = context.WithCancel(bg)
	gone = produce(ctx, e.url(1), "dc", "p", []byte("from the dead one"), "")
	e.awaitWaiting(t, "dc", "p", subjects.PipeProducer, 1)
	cancel()
	<-gone
	e.awaitWaiting(t, "dc", "p", subjects.PipeProducer, 0)
	livep := produce(bg, e.url(1), "dc", "p", []byte("from the live one"), "")
	e.awaitWaiting(t, "dc", "p", subjects.PipeProducer, 1)
	if c := wait(t, consume(bg, e.url(0), "dc", "p")); string(c.body) != "from the live one" {
		t.Fatalf("consumer got %d %q", c.status, c.body)
	}
	if p := wait(t, livep); p.status != http.StatusOK {
		t.Fatalf("live producer: %d", p.status)
	}
}

// slowBody yields size bytes in small pieces and reports how far it got.
type slowBody struct {
	left    int64
	sent    chan int64
	total   int64
	stopped chan struct{}
}

func (b *slowBody) Read(p []byte) (int, error) {
	select {
	case <-b.stopped:
		return 0, errors.New("stopped")
	default:
	}
	if b.left == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), b.left, 32<<10)
	b.left -= n
	b.total += n
	select {
	case b.sent <- b.total:
	default:
	}
	return int(n), nil
}

// TestProducerDropsMidTransfer checks that a producer that goes away
// mid-body cuts the consumer's response (a read error, not a clean end),
// both across gateways and on one gateway.
func TestProducerDropsMidTransfer(t *testing.T) {
	e := twoOnOneServer(t, nil)
	for _, pair := range [][2]int{{0, 1}, {0, 0}} {
		bg := context.Background()
		resp := startConsumer(t, e.url(pair[1]), "drop", "p")
		e.awaitWaiting(t, "drop", "p", subjects.PipeConsumer, 1)
		ctx, cancel := context.WithCancel(bg)
		pr, pw := io.Pipe()
		post := async(ctx, http.MethodPost, chanURL(e.url(pair[0]), "drop", "p"), pr, "")
		go func() { _, _ = pw.Write(make([]byte, 1<<20)) }()
		r := <-resp
		if r.err != nil || r.resp.StatusCode != http.StatusOK {
			t.Fatalf("consumer: %v", r.err)
		}
		if _, err := io.ReadFull(r.resp.Body, make([]byte, 1<<20)); err != nil {
			t.Fatalf("first MiB: %v", err)
		}
		cancel()
		_ = pw.CloseWithError(errors.New("client gone"))
		rest, err := io.ReadAll(r.resp.Body)
		r.resp.Body.Close()
		if err == nil {
			t.Fatalf("consumer saw a clean end after %d more bytes; want a cut response", len(rest))
		}
		<-post
		e.awaitWaiting(t, "drop", "p", subjects.PipeConsumer, 0)
	}
}

type started struct {
	resp *http.Response
	err  error
}

func startConsumer(t *testing.T, base, ns, name string) <-chan started {
	ch := make(chan started, 1)
	go func() {
		resp, err := http.Get(chanURL(base, ns, name))
		ch <- started{resp, err}
	}()
	return ch
}

// TestConsumerDropsMidTransfer checks that the producer gets a 5xx when
// its consumer goes away mid-body.
func TestConsumerDropsMidTransfer(t *testing.T) {
	e := twoOnOneServer(t, nil)
	for _, pair := range [][2]int{{0, 1}, {1, 1}} {
		body := &slowBody{left: 1 << 30, sent: make(chan int64, 1), stopped: make(chan struct{})}
		post := async(context.Background(), http.MethodPost, chanURL(e.url(pair[0]), "drop", "c"), body, "")
		e.awaitWaiting(t, "drop", "c", subjects.PipeProducer, 1)
		r := <-startConsumer(t, e.url(pair[1]), "drop", "c")
		if r.err != nil || r.resp.StatusCode != http.StatusOK {
			t.Fatalf("consumer: %v", r.err)
		}
		if _, err := io.ReadFull(r.resp.Body, make([]byte, 1<<20)); err != nil {
			t.Fatalf("first MiB: %v", err)
		}
		r.resp.Body.Close()
		p := wait(t, post)
		close(body.stopped)
		if p.err == nil && p.status < 500 {
			t.Fatalf("producer whose consumer left: %d %s", p.status, p.body)
		}
		if p.err == nil && errorCode(t, p) != "PARTNER_LOST" {
			t.Fatalf("producer error: %s", p.body)
		}
	}
}

func TestShutdownEndsWaiters(t *testing.T) {
	e := twoOnOneServer(t, nil)
	c := consume(context.Background(), e.url(0), "sd", "x")
	e.awaitWaiting(t, "sd", "x", subjects.PipeConsumer, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.gws[0].Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if r := wait(t, c); r.err == nil && r.status != http.StatusServiceUnavailable {
		t.Fatalf("waiter at shutdown: %d %s", r.status, r.body)
	}
	e.awaitWaiting(t, "sd", "x", subjects.PipeConsumer, 0)
	// The other gateway still serves the channel.
	c2 := consume(context.Background(), e.url(1), "sd", "x")
	if p := wait(t, produce(context.Background(), e.url(1), "sd", "x", []byte("after"), "")); p.status != http.StatusOK {
		t.Fatalf("after shutdown of the other gateway: %d", p.status)
	}
	if r := wait(t, c2); string(r.body) != "after" {
		t.Fatalf("got %q", r.body)
	}
}

func TestBadInput(t *testing.T) {
	e := embedded(t, nil)
	ctx := context.Background()
	long := strings.Repeat("x", 257)
	cases := []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/channels/ns/" + long, http.StatusBadRequest},
		{http.MethodPost, "/channels/" + long + "/x", http.StatusBadRequest},
		{http.MethodGet, "/channels/" + long, http.StatusBadRequest},
		{http.MethodDelete, "/channels/" + long, http.StatusBadRequest},
		// A trailing slash is ignored (issue 14): /channels/ns/ is the
		// listing of ns (404 NOT_FOUND: nobody waits), which takes no
		// POST; /channels/ns// names the empty channel.
		{http.MethodGet, "/channels/ns/", http.StatusNotFound},
		{http.MethodPost, "/channels/ns/", http.StatusMethodNotAllowed},
		{http.MethodGet, "/channels/ns//", http.StatusBadRequest},
		{http.MethodPost, "/channels/ns//", http.StatusBadRequest},
		{http.MethodGet, "/channels//x", http.StatusBadRequest},
		{http.MethodGet, "/channels/ns/" + long + "/", http.StatusBadRequest},
		{http.MethodPatch, "/channels/ns/x", http.StatusMethodNotAllowed},
		{http.MethodPost, "/state", http.StatusMethodNotAllowed},
		{http.MethodPost, "/channels/namespaces", http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		r := do(ctx, c.method, e.url(0)+c.path, strings.NewReader("body"), "")
		if r.err != nil || r.status != c.status {
			t.Errorf("%s %.40s: %d %s %v, want %d", c.method, c.path, r.status, r.body, r.err, c.status)
			continue
		}
		errorCode(t, r)
	}
	// Malformed escapes never reach the router.
	for _, path := range []string{"/channels/ns/%zz", "/channels/%/x", "/channels/ns/a%2"} {
		if st := rawStatus(t, e.gws[0].Addr(), "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); st != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", path, st)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		var st map[string][]string
		if getJSON(t, e.url(0)+"/state", &st); len(st) != 0 {
			return errors.New("bad input left state behind")
		}
		return nil
	})
}

func rawStatus(t *testing.T, addr, req string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestShutdownDuringTransfer checks that stopping the consumer's gateway
// mid-body ends both sides promptly: the consumer's response is cut, the
// producer gets a 5xx.
func TestShutdownDuringTransfer(t *testing.T) {
	for _, producerGW := range []int{0, 1} {
		shutdownDuringTransfer(t, producerGW)
	}
}

func shutdownDuringTransfer(t *testing.T, producerGW int) {
	e := twoOnOneServer(t, nil)
	body := &slowBody{left: 1 << 40, sent: make(chan int64, 1), stopped: make(chan struct{})}
	defer close(body.stopped)
	post := async(context.Background(), http.MethodPost, chanURL(e.url(producerGW), "sd", "t"), body, "")
	e.awaitWaiting(t, "sd", "t", subjects.PipeProducer, 1)
	r := <-startConsumer(t, e.url(1), "sd", "t")
	if r.err != nil || r.resp.StatusCode != http.StatusOK {
		t.Fatalf("consumer: %v", r.err)
	}
	defer r.resp.Body.Close()
	if _, err := io.ReadFull(r.resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.gws[1].Shutdown(ctx); err != nil {
		t.Fatalf("shutdown during a transfer: %v", err)
	}
	if _, err := io.Copy(io.Discard, r.resp.Body); err == nil {
		t.Fatal("consumer saw a clean end")
	}
	if p := wait(t, post); p.err == nil && p.status < 500 {
		t.Fatalf("producer: %d %s", p.status, p.body)
	}
}

// TestDeleteRetried: a party that leaves while JetStream has no quorum
// (two of three nodes down) cannot be deleted from the queue at once; the
// deletion is retried in the background, so once the nodes are back the
// party is gone from the queue and the listings, although nobody uses its
// channel again (before, its entry stayed there for good).
func TestDeleteRetried(t *testing.T) {
	c, gws := harness.StartOnCluster(t, 1, nil)
	e := newEnv(t, gws, c.URLs())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	left := produce(ctx, e.url(0), "retry", "ch", []byte("x"), "")
	e.awaitWaiting(t, "retry", "ch", subjects.PipeProducer, 1)

	c.Stop(1)
	c.Stop(2)
	cancel()
	<-left
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := e.metric(t, "switchboard_pipe_delete_retries_total"); n < 1 {
			return errors.New("no deletion retried yet")
		}
		return nil
	})
	c.Restart(1, 2)
	natstest.Eventually(t, 60*time.Second, func() error {
		n, err := e.waitingNow("retry", "ch", subjects.PipeProducer)
		if err == nil && n != 0 {
			err = fmt.Errorf("%d producers still in the queue", n)
		}
		if err != nil {
			return err
		}
		// Every partition's stream answers again (a 503 until then), and
		// the namespace is empty.
		if r := do(context.Background(), http.MethodGet, e.url(0)+"/channels/retry", nil, ""); r.status != http.StatusNotFound {
			return fmt.Errorf("listing of the namespace: %d %s", r.status, r.body)
		}
		return nil
	})
}

// TestLostEntry: the queue is in memory storage, so a restart of every
// NATS node empties it. A party that waited through that restart is not
// left waiting unseen until its client gives up: its gateway's sweep
// finds its entry gone and answers 503, telling it to send the request
// again, which then pairs as usual.
func TestLostEntry(t *testing.T) {
	c, gws := harness.StartOnCluster(t, 2, func(cfg *gateway.Config) { cfg.Pipe.SweepInterval = 100 * time.Millisecond })
	e := newEnv(t, gws, c.URLs())
	bg := context.Background()
	waiting := produce(bg, e.url(0), "lost", "ch", []byte("first"), "")
	e.awaitWaiting(t, "lost", "ch", subjects.PipeProducer, 1)

	for i := range c.Servers {
		c.Stop(i)
	}
	c.Restart(0, 1, 2)
	p := wait(t, waiting)
	if p.status != http.StatusServiceUnavailable || !strings.Contains(string(p.body), "lost") {
		t.Fatalf("producer whose entry was lost: %d %s", p.status, p.body)
	}
	if n := e.metric(t, `switchboard_pipe_unpaired_total{reason="lost"}`); n != 1 {
		t.Fatalf("unpaired{lost} = %d, want 1", n)
	}
	// Sent again, it pairs, across the gateways.
	natstest.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(bg, 15*time.Second)
		defer cancel()
		cons := consume(ctx, e.url(1), "lost", "ch")
		p := wait(t, produce(ctx, e.url(0), "lost", "ch", []byte("again"), ""))
		r := wait(t, cons)
		if p.status != http.StatusOK || string(r.body) != "again" {
			return fmt.Errorf("producer %d %s; consumer %d %q", p.status, p.body, r.status, r.body)
		}
		return nil
	})
}
