package middleman_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/natstest"
)

// Fan-out shape of BenchmarkPubFanout.
const (
	fanoutSubscribers = 100
	fanoutWindow      = 256 // most messages in flight to the slowest subscriber
)

func benchConfig(c *gateway.Config) { c.Log.Level = "error" }

// latencies collects delivery latencies of one run.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	slices.Sort(l.d)
	return l.d[min(len(l.d)-1, int(q*float64(len(l.d))))]
}

// fanout tracks delivery progress of one publisher to many subscribers.
type fanout struct {
	delivered []atomic.Int64
	lat       latencies
}

func newFanout(n int) *fanout { return &fanout{delivered: make([]atomic.Int64, n)} }

// record notes one delivery to subscriber i of a body "<seq> <unixnano>".
func (f *fanout) record(i int, body []byte) {
	seq, sent, _ := strings.Cut(string(body), " ")
	if ns, err := strconv.ParseInt(sent, 10, 64); err == nil && seq != "" && seq[len(seq)-1] == '0' {
		f.lat.add(time.Duration(time.Now().UnixNano() - ns)) // sample every 10th
	}
	f.delivered[i].Add(1)
}

func (f *fanout) slowest() int64 {
	m := f.delivered[0].Load()
	for i := range f.delivered {
		m = min(m, f.delivered[i].Load())
	}
	return m
}

// publish sends n bodies through send, keeping at most fanoutWindow
// messages ahead of the slowest subscriber, then waits for the rest.
func (f *fanout) publish(b *testing.B, n int, send func(body []byte)) time.Duration {
	start := time.Now()
	for i := range n {
		for int64(i)-f.slowest() >= fanoutWindow {
			time.Sleep(50 * time.Microsecond)
		}
		send([]byte(fmt.Sprintf("%d %d", i, time.Now().UnixNano())))
	}
	deadline := time.Now().Add(time.Minute)
	for f.slowest() < int64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("deliveries stalled at %d of %d", f.slowest(), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return time.Since(start)
}

// fanoutRounds alternates raw NATS and middleman runs, so both see the same
// machine load; the medians are reported.
const fanoutRounds = 3

// BenchmarkPubFanout: one publisher, 100 subscribers spread over two
// gateways, next to raw NATS core pub/sub doing the same fan-out (100
// subscriber connections) in the same run: b.N messages per variant per
// round, rounds alternating. Run with -benchtime 20000x.
func BenchmarkPubFanout(b *testing.B) {
	srv := natstest.RunServer(b, nil)
	raw := newRawFanout(b, srv.URL())
	mm := newMiddlemanFanout(b, srv.URL())
	var rawRates, mmRates []float64
	var rawP99, mmP99 []time.Duration
	b.ResetTimer()
	for round := range fanoutRounds {
		runs := []func(){
			func() { r, p := raw.run(b, b.N); rawRates, rawP99 = append(rawRates, r), append(rawP99, p) },
			func() { r, p := mm.run(b, b.N); mmRates, mmP99 = append(mmRates, r), append(mmP99, p) },
		}
		if round%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, run := range runs {
			run()
		}
	}
	b.StopTimer()
	rawRate, mmRate := median(rawRates), median(mmRates)
	b.ReportMetric(rawRate, "raw-delivered/s")
	b.ReportMetric(mmRate, "mm-delivered/s")
	b.ReportMetric(100*mmRate/rawRate, "%-of-raw")
	b.ReportMetric(float64(median(rawP99).Microseconds()), "raw-p99-µs")
	b.ReportMetric(float64(median(mmP99).Microseconds()), "mm-p99-µs")
	b.ReportMetric(0, "ns/op")
}

func median[T int64 | float64 | time.Duration](v []T) T {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// fanoutRig is one fan-out setup that can run rounds.
type fanoutRig struct {
	f    atomic.Pointer[fanout]
	send func(body []byte)
}

// run publishes n messages and returns delivered msgs/s and p99 latency.
func (r *fanoutRig) run(b *testing.B, n int) (float64, time.Duration) {
	f := newFanout(fanoutSubscribers)
	r.f.Store(f)
	elapsed := f.publish(b, n, r.send)
	return float64(n*fanoutSubscribers) / elapsed.Seconds(), f.lat.quantile(0.99)
}

// current routes a delivery to the rig's fanout of the running round.
func (r *fanoutRig) record(i int, body []byte) {
	if f := r.f.Load(); f != nil {
		f.record(i, body)
	}
}

func newRawFanout(b *testing.B, url string) *fanoutRig {
	r := &fanoutRig{}
	for i := range fanoutSubscribers {
		nc, err := nats.Connect(url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		if _, err := nc.Subscribe("bench.fanout", func(m *nats.Msg) { r.record(i, m.Data) }); err != nil {
			b.Fatal(err)
		}
		_ = nc.Flush()
	}
	pub, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pub.Close)
	r.send = func(body []byte) { _ = pub.Publish("bench.fanout", body) }
	return r
}

func newMiddlemanFanout(b *testing.B, url string) *fanoutRig {
	r := &fanoutRig{}
	gws := harness.StartN(b, 2, url, mmConfig(benchConfig))
	var wg sync.WaitGroup
	var conns []*websocket.Conn
	b.Cleanup(func() {
		for _, ws := range conns {
			_ = ws.CloseNow()
		}
		wg.Wait()
	})
	for i := range fanoutSubscribers {
		c := dial(b, gws[i%2], svcKey)
		conns = append(conns, c.ws)
		c.send("SUB", "fanout", "")
		c.sync()
		wg.Add(1)
		go func() {
			defer wg.Done()
			readBodies(c.ws, func(body []byte) { r.record(i, body) })
		}()
	}
	pub := dial(b, gws[0], svcKey)
	r.send = func(body []byte) {
		fr := middleman.Frame{Cmd: "PUB", Key: "fanout", Body: body}
		if err := pub.ws.Write(context.Background(), websocket.MessageText, fr.Bytes()); err != nil {
			b.Error(err)
		}
	}
	return r
}

// readBodies reads PUB frames like a lean client: one reused buffer, no
// per-message context, the body cut out without a full parse.
func readBodies(ws *websocket.Conn, fn func(body []byte)) {
	var buf bytes.Buffer
	for {
		_, r, err := ws.Reader(context.Background())
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		msg := buf.Bytes()
		if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
			fn(bytes.TrimSuffix(msg[i+4:], []byte("\r\n.\r\n")))
		}
	}
}

// BenchmarkReqRes: 32 concurrent requesters and 4 services spread over two
// gateways; each requester waits for its RES before the next REQ.
func BenchmarkReqRes(b *testing.B) {
	const requesters, services = 32, 4
	srv := natstest.RunServer(b, nil)
	gws := harness.StartN(b, 2, srv.URL(), mmConfig(benchConfig))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range services {
		svc := dial(b, gws[i%2], svcKey)
		svc.send("EREQ", "bench", "")
		svc.sync()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, data, err := svc.ws.Read(ctx)
				if err != nil {
					return
				}
				req, err := middleman.Parse(data)
				if err != nil || req.Cmd != "REQ" {
					continue
				}
				res := middleman.Frame{Cmd: "RES", Key: "bench", Body: req.Body}
				res.Set("Rid", req.Get("Rid"))
				if err := svc.ws.Write(ctx, websocket.MessageText, res.Bytes()); err != nil {
					return
				}
			}
		}()
	}
	clients := make([]*client, requesters)
	for i := range clients {
		clients[i] = dial(b, gws[(i+1)%2], cliKey)
	}
	var lat latencies
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var rg sync.WaitGroup
	for _, c := range clients {
		rg.Add(1)
		go func() {
			defer rg.Done()
			req := (&middleman.Frame{Cmd: "REQ", Key: "bench", Body: []byte("ping")}).Bytes()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := c.ws.Write(ctx, websocket.MessageText, req); err != nil {
					b.Error(err)
					return
				}
				_, data, err := c.ws.Read(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				if !strings.HasPrefix(string(data), "RES bench") {
					b.Errorf("got %q", data)
					return
				}
				lat.add(time.Since(t0))
			}
		}()
	}
	rg.Wait()
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "roundtrips/s")
	b.ReportMetric(float64(lat.quantile(0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat.quantile(0.99).Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op")
}
