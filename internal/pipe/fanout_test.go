package pipe_test

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// threeOnOneServer starts three gateways on one nats-server.
func threeOnOneServer(t testing.TB) *env {
	t.Helper()
	srv := natstest.RunServer(t, nil)
	return newEnv(t, harness.StartN(t, 3, srv.URL(), nil), srv.URL())
}

// crcGet is a receiver that hashes what it reads; cancel cuts it.
type crcGet struct {
	status int
	n      int64
	sum    uint32
	err    error
	header http.Header
}

func getCRC(ctx context.Context, u string, stopAfter int64) <-chan crcGet {
	ch := make(chan crcGet, 1)
	go func() {
		var r crcGet
		defer func() { ch <- r }()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			r.err = err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			r.err = err
			return
		}
		defer resp.Body.Close()
		r.status, r.header = resp.StatusCode, resp.Header
		h := crc32.New(castagnoli)
		var body io.Reader = resp.Body
		if stopAfter > 0 {
			body = io.LimitReader(resp.Body, stopAfter)
		}
		r.n, r.err = io.Copy(h, body)
		r.sum = h.Sum32()
	}()
	return ch
}

func waitCRC(t testing.TB, ch <-chan crcGet) crcGet {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(90 * time.Second):
		t.Fatal("receiver did not finish")
		return crcGet{}
	}
}

// TestFanOutThreeGateways sends one 100 MiB body to three receivers on
// three gateways (one waiting before the producer, two after) and checks
// that each gets it intact while the heap stays far below the body's
// size.
func TestFanOutThreeGateways(t *testing.T) {
	size := int64(100 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	const heapBound = 200 << 20
	e := threeOnOneServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	heap := sampleHeap()

	r0 := getCRC(ctx, chanURL(e.url(0), "fan", "x")+"?n=3", 0)
	e.awaitWaiting(t, "fan", "x", subjects.PipeConsumer, 1)
	want := crc32.New(castagnoli)
	body := io.TeeReader(newPatternReader(size), want)
	post := asyncWith(ctx, http.MethodPost, chanURL(e.url(1), "fan", "x")+"?n=3", body,
		http.Header{"Content-Disposition": {`attachment; filename="f.bin"`}})
	// The producer took the waiting receiver and waits for two more.
	e.awaitWaiting(t, "fan", "x", subjects.PipeProducer, 1)
	r1 := getCRC(ctx, chanURL(e.url(1), "fan", "x")+"?n=3", 0)
	r2 := getCRC(ctx, chanURL(e.url(2), "fan", "x")+"?n=3", 0)
	start := time.Now()
	got := []crcGet{waitCRC(t, r0), waitCRC(t, r1), waitCRC(t, r2)}
	elapsed := time.Since(start)
	if p := wait(t, post); p.status != http.StatusOK {
		t.Fatalf("producer: %d %s %v", p.status, p.body, p.err)
	}
	peak := heap.done()
	for i, g := range got {
		if g.err != nil || g.status != http.StatusOK || g.n != size || g.sum != want.Sum32() {
			t.Fatalf("receiver %d: status %d, %d of %d bytes, crc ok %v, err %v", i, g.status, g.n, size, g.sum == want.Sum32(), g.err)
		}
		if d := g.header.Get("Content-Disposition"); d != `attachment; filename="f.bin"` {
			t.Fatalf("receiver %d: Content-Disposition %q", i, d)
		}
	}
	if n := e.waiting(t, "fan", "x", subjects.PipeProducer); n != 0 {
		t.Fatalf("%d producers still listed", n)
	}
	t.Logf("%d MiB to 3 receivers in %v (%.0f MB/s per receiver), heap peak %d MiB (base %d MiB)",
		size>>20, elapsed.Round(time.Millisecond), float64(size)/elapsed.Seconds()/1e6, peak>>20, base.HeapAlloc>>20)
	if peak > base.HeapAlloc+heapBound {
		t.Fatalf("heap peaked at %d MiB (base %d MiB, bound +%d MiB)", peak>>20, base.HeapAlloc>>20, heapBound>>20)
	}
}

// TestFanOutReceiverLeaves cuts one of three receivers mid-body: the
// other two get everything and the producer gets 200.
func TestFanOutReceiverLeaves(t *testing.T) {
	const size = int64(24 << 20)
	e := threeOnOneServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r0 := getCRC(ctx, chanURL(e.url(0), "fan", "cut")+"?n=3", 0)
	r1 := getCRC(ctx, chanURL(e.url(1), "fan", "cut")+"?n=3", 0)
	r2 := getCRC(ctx, chanURL(e.url(2), "fan", "cut")+"?n=3", 2<<20) // leaves after 2 MiB
	e.awaitWaiting(t, "fan", "cut", subjects.PipeConsumer, 3)
	want := crc32.New(castagnoli)
	post := async(ctx, http.MethodPost, chanURL(e.url(0), "fan", "cut")+"?n=3",
		io.TeeReader(newPatternReader(size), want), "")
	if g := waitCRC(t, r2); g.n != 2<<20 {
		t.Fatalf("leaving receiver read %d bytes: %v", g.n, g.err)
	}
	for i, ch := range []<-chan crcGet{r0, r1} {
		g := waitCRC(t, ch)
		if g.err != nil || g.n != size || g.sum != want.Sum32() {
			t.Fatalf("receiver %d: %d of %d bytes, crc ok %v, err %v", i, g.n, size, g.sum == want.Sum32(), g.err)
		}
	}
	if p := wait(t, post); p.status != http.StatusOK {
		t.Fatalf("producer: %d %s %v", p.status, p.body, p.err)
	}
}

// TestFanOutMismatch checks the 400s of a differing n: a consumer that
// meets a producer with another n (on its gateway or another), a
// producer that meets a waiting consumer with another n; neither changes
// what waits, and the right partners still pair afterwards.
func TestFanOutMismatch(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := func(i int, q string) string { return chanURL(e.url(i), "mm", "x") + q }

	post := async(ctx, http.MethodPost, u(0, "?n=2"), strings.NewReader("two"), "")
	e.awaitWaiting(t, "mm", "x", subjects.PipeProducer, 1)
	for _, q := range []string{"", "?n=1", "?n=3"} {
		for gw := range 2 {
			r := do(ctx, http.MethodGet, u(gw, q), nil, "")
			if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "should be 2") {
				t.Fatalf("GET%s on gateway %d: %d %s", q, gw, r.status, r.body)
			}
		}
	}
	if n := e.waiting(t, "mm", "x", subjects.PipeProducer); n != 1 {
		t.Fatalf("%d producers wait after the refusals, want 1", n)
	}
	get := func(i int, q string) <-chan result { return async(ctx, http.MethodGet, u(i, q), nil, "") }
	c0, c1 := get(1, "?n=2"), get(0, "?n=2")
	for _, c := range []<-chan result{c0, c1} {
		if r := wait(t, c); r.status != http.StatusOK || string(r.body) != "two" {
			t.Fatalf("receiver: %d %q", r.status, r.body)
		}
	}
	if r := wait(t, post); r.status != http.StatusOK {
		t.Fatalf("producer: %d %s", r.status, r.body)
	}

	// A consumer waits with n=2: a producer with n=3 (or none) is refused.
	c2 := get(1, "?n=2")
	e.awaitWaiting(t, "mm", "x", subjects.PipeConsumer, 1)
	for _, q := range []string{"", "?n=3"} {
		r := do(ctx, http.MethodPost, u(0, q), strings.NewReader("no"), "")
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "should be 2") {
			t.Fatalf("POST%s: %d %s", q, r.status, r.body)
		}
	}
	if n := e.waiting(t, "mm", "x", subjects.PipeConsumer); n != 1 {
		t.Fatalf("%d consumers wait after the refusals, want 1", n)
	}
	post = async(ctx, http.MethodPost, u(0, "?n=2"), strings.NewReader("again"), "")
	c3 := get(0, "?n=2")
	for _, c := range []<-chan result{c2, c3} {
		if r := wait(t, c); r.status != http.StatusOK || string(r.body) != "again" {
			t.Fatalf("receiver: %d %q", r.status, r.body)
		}
	}
	if r := wait(t, post); r.status != http.StatusOK {
		t.Fatalf("producer: %d %s", r.status, r.body)
	}
}

// TestFanOutBadParams checks that malformed n, pubsub and progress are
// 400 before anything waits.
func TestFanOutBadParams(t *testing.T) {
	e := embedded(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{"?n=0", "?n=-1", "?n=abc", "?n=257", "?n=1&n=2", "?n=", "?pubsub=maybe",
		"?progress=yes", "?pubsub=true&n=2", "?progress=1&progress=0"} {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			r := do(ctx, m, chanURL(e.url(0), "bad", "x")+q, strings.NewReader("b"), "")
			if r.status != http.StatusBadRequest || errorCode(t, r) != "BAD_REQUEST" {
				t.Fatalf("%s %s: %d %s", m, q, r.status, r.body)
			}
		}
	}
	for _, role := range []string{subjects.PipeProducer, subjects.PipeConsumer} {
		if n := e.waiting(t, "bad", "x", role); n != 0 {
			t.Fatalf("%d of role %s wait after bad requests", n, role)
		}
	}
}

// TestFanOutGroupsFIFO checks that successive ?n groups keep their
// order: the second producer's body goes to the receivers after the
// first group.
func TestFanOutGroupsFIFO(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := func(i int) string { return chanURL(e.url(i), "fifo", "g") + "?n=2" }
	a := async(ctx, http.MethodPost, u(0), strings.NewReader("A"), "")
	e.awaitWaiting(t, "fifo", "g", subjects.PipeProducer, 1)
	b := async(ctx, http.MethodPost, u(1), strings.NewReader("B"), "")
	e.awaitWaiting(t, "fifo", "g", subjects.PipeProducer, 2)
	for _, body := range []string{"A", "B"} {
		c1 := async(ctx, http.MethodGet, u(1), nil, "")
		c2 := async(ctx, http.MethodGet, u(0), nil, "")
		for _, c := range []<-chan result{c1, c2} {
			if r := wait(t, c); r.status != http.StatusOK || string(r.body) != body {
				t.Fatalf("receiver: %d %q, want %q", r.status, r.body, body)
			}
		}
	}
	for _, p := range []<-chan result{a, b} {
		if r := wait(t, p); r.status != http.StatusOK {
			t.Fatalf("producer: %d %s", r.status, r.body)
		}
	}
}

// TestProgressLines checks ?progress=1: the producer's 200 streams
// piping-server-like lines while it waits and sends, and a failure after
// the first line is the last line of a cut response.
func TestProgressLines(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, chanURL(e.url(0), "prog", "x")+"?n=2&progress=1", pr)
	type resp struct {
		r   *http.Response
		err error
	}
	rc := make(chan resp, 1)
	go func() {
		r, err := http.DefaultClient.Do(req)
		rc <- resp{r, err}
	}()
	go func() {
		_, _ = pw.Write([]byte("hello progress"))
		_ = pw.Close()
	}()
	var res resp
	select {
	case res = <-rc:
	case <-ctx.Done():
		t.Fatal("no response head while waiting")
	}
	if res.err != nil || res.r.StatusCode != http.StatusOK || !strings.HasPrefix(res.r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("head: %v %+v", res.err, res.r)
	}
	defer res.r.Body.Close()
	lines := bufio.NewReader(res.r.Body)
	next := func() string {
		l, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("line: %q %v", l, err)
		}
		return l
	}
	if l := next(); l != "[INFO] Waiting for 2 receiver(s)...\n" {
		t.Fatalf("first line %q", l)
	}
	c1 := async(ctx, http.MethodGet, chanURL(e.url(1), "prog", "x")+"?n=2", nil, "")
	if l := next(); l != "[INFO] A receiver was connected.\n" {
		t.Fatalf("line %q", l)
	}
	c2 := async(ctx, http.MethodGet, chanURL(e.url(0), "prog", "x")+"?n=2", nil, "")
	rest, err := io.ReadAll(lines)
	if err != nil {
		t.Fatal(err)
	}
	wantRest := "[INFO] A receiver was connected.\n" +
		"[INFO] Start sending to 2 receiver(s)!\n" +
		"[INFO] Sent 14 bytes.\n" +
		"[INFO] Sent successfully!\n" +
		"[INFO] All receiver(s) was/were received successfully.\n"
	if string(rest) != wantRest {
		t.Fatalf("lines:\n%s\nwant:\n%s", rest, wantRest)
	}
	for _, c := range []<-chan result{c1, c2} {
		if r := wait(t, c); r.status != http.StatusOK || string(r.body) != "hello progress" {
			t.Fatalf("receiver: %d %q", r.status, r.body)
		}
	}

	// Without the flag the producer's 200 is empty, as the SPEC says.
	p := produce(ctx, e.url(0), "prog", "plain", []byte("x"), "")
	if r := wait(t, consume(ctx, e.url(1), "prog", "plain")); r.status != http.StatusOK {
		t.Fatalf("consumer: %d", r.status)
	}
	if r := wait(t, p); r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("plain producer: %d %q", r.status, r.body)
	}

	// A failure after the first line: the last line says why, the
	// response is cut (the client sees an error, not a clean end).
	e2 := embedded(t, func(c *gateway.Config) { c.Pipe.Timeout = 300 * time.Millisecond })
	r := do(ctx, http.MethodPost, chanURL(e2.url(0), "prog", "late")+"?progress=1", strings.NewReader("x"), "")
	if r.status != http.StatusOK || !strings.HasPrefix(string(r.body), "[INFO] Waiting for 1 receiver(s)...\n") ||
		!strings.Contains(string(r.body), "[ERROR] ") || r.err == nil {
		t.Fatalf("timed out producer: %d %q err %v", r.status, r.body, r.err)
	}
}

// metric sums the samples of name{labels} on the gateways' /metrics.
func (e *env) metric(t testing.TB, sample string) int {
	t.Helper()
	total := 0
	for _, g := range e.gws {
		r := do(context.Background(), http.MethodGet, g.URL()+"/metrics", nil, "")
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("metrics: %d %v", r.status, r.err)
		}
		for _, l := range strings.Split(string(r.body), "\n") {
			if v, ok := strings.CutPrefix(l, sample+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatal(err)
				}
				total += int(f)
			}
		}
	}
	return total
}

// awaitMetric polls until metric sample sums to n on every gateway.
func (e *env) awaitMetric(t testing.TB, sample string, n int) {
	t.Helper()
	natstest.Eventually(t, 20*time.Second, func() error {
		if got := e.metric(t, sample); got != n {
			return fmt.Errorf("%s = %d, want %d", sample, got, n)
		}
		return nil
	})
}

// TestPubSub checks patchbay's pub/sub: five pub/sub receivers on two
// gateways all get one POST ?pubsub=true; a POST with nobody waiting is
// 200 at once; ordinary pairing on the same channel stays FIFO and a
// pub/sub POST also reaches ordinary waiting receivers.
func TestPubSub(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := func(i int, q string) string { return chanURL(e.url(i), "ps", "x") + q }
	const waitingC = `switchboard_pipe_waiting{role="c"}`

	start := time.Now()
	r := do(ctx, http.MethodPost, u(0, "?pubsub=true"), strings.NewReader("nobody"), "")
	if r.status != http.StatusOK || time.Since(start) > 5*time.Second {
		t.Fatalf("pub/sub POST to nobody: %d %s after %v", r.status, r.body, time.Since(start))
	}

	var subs []<-chan result
	for i := range 5 {
		subs = append(subs, async(ctx, http.MethodGet, u(i%2, "?pubsub=true"), nil, ""))
	}
	e.awaitMetric(t, waitingC, 5)
	if r := do(ctx, http.MethodPost, u(1, "?pubsub=true"), strings.NewReader("news"), "text/plain"); r.status != http.StatusOK {
		t.Fatalf("pub/sub POST: %d %s", r.status, r.body)
	}
	for i, c := range subs {
		if r := wait(t, c); r.status != http.StatusOK || string(r.body) != "news" || r.ct != "text/plain" {
			t.Fatalf("subscriber %d: %d %q %q", i, r.status, r.body, r.ct)
		}
	}

	// Ordinary pairing is unchanged and never meets pub/sub consumers.
	sub := async(ctx, http.MethodGet, u(0, "?pubsub=1"), nil, "")
	e.awaitMetric(t, waitingC, 1)
	p1 := async(ctx, http.MethodPost, u(0, ""), strings.NewReader("one"), "")
	e.awaitWaiting(t, "ps", "x", subjects.PipeProducer, 1)
	p2 := async(ctx, http.MethodPost, u(1, ""), strings.NewReader("two"), "")
	e.awaitWaiting(t, "ps", "x", subjects.PipeProducer, 2)
	for _, want := range []string{"one", "two"} {
		if r := wait(t, async(ctx, http.MethodGet, u(1, ""), nil, "")); r.status != http.StatusOK || string(r.body) != want {
			t.Fatalf("ordinary consumer: %d %q, want %q", r.status, r.body, want)
		}
	}
	for _, p := range []<-chan result{p1, p2} {
		if r := wait(t, p); r.status != http.StatusOK {
			t.Fatalf("ordinary producer: %d", r.status)
		}
	}

	// A pub/sub POST reaches ordinary waiting consumers too.
	c := async(ctx, http.MethodGet, u(1, ""), nil, "")
	e.awaitWaiting(t, "ps", "x", subjects.PipeConsumer, 1)
	if r := do(ctx, http.MethodPost, u(0, "?pubsub=true"), strings.NewReader("all"), ""); r.status != http.StatusOK {
		t.Fatalf("pub/sub POST: %d %s", r.status, r.body)
	}
	for _, ch := range []<-chan result{c, sub} {
		if r := wait(t, ch); r.status != http.StatusOK || string(r.body) != "all" {
			t.Fatalf("receiver: %d %q", r.status, r.body)
		}
	}
	if n := e.waiting(t, "ps", "x", subjects.PipeConsumer); n != 0 {
		t.Fatalf("%d consumers still listed", n)
	}
}

// TestFanOutIncompleteGroup: a producer whose group is not complete when
// pipe.timeout passes gets 408, leaves the queue, and the receiver it
// already had is cut (never a clean 200 that looks complete).
func TestFanOutIncompleteGroup(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	short := func(c *gateway.Config) { c.Pipe.Timeout = 3 * time.Second }
	e := newEnv(t, harness.StartN(t, 2, srv.URL(), short), srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := func(i int) string { return chanURL(e.url(i), "inc", "x") + "?n=3" }
	post := async(ctx, http.MethodPost, u(0), strings.NewReader("never all"), "")
	e.awaitWaiting(t, "inc", "x", subjects.PipeProducer, 1)
	c := async(ctx, http.MethodGet, u(1), nil, "")
	if r := wait(t, post); r.status != http.StatusRequestTimeout {
		t.Fatalf("producer: %d %s", r.status, r.body)
	}
	if r := wait(t, c); r.err == nil {
		t.Fatalf("receiver of an incomplete group got a clean response: %d %q", r.status, r.body)
	}
	e.awaitWaiting(t, "inc", "x", subjects.PipeProducer, 0)
	// The channel works normally afterwards.
	p := produce(ctx, e.url(1), "inc", "x", []byte("fine"), "")
	if r := wait(t, consume(ctx, e.url(0), "inc", "x")); r.status != http.StatusOK || string(r.body) != "fine" {
		t.Fatalf("next pair: %d %q", r.status, r.body)
	}
	if r := wait(t, p); r.status != http.StatusOK {
		t.Fatalf("next producer: %d", r.status)
	}
}
