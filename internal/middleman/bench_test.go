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
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/natstest"
)

// Fan-out shape of BenchmarkPubFanout.
const (
	fanoutSubscribers = 100
	fanoutWindow      = 256 // most messages in flight to the slowest subscriber
)

func benchConfig(c *config.Gateway) { c.Log.Level = "error" }

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

func report(b *testing.B, n int, elapsed time.Duration, lat *latencies) float64 {
	rate := float64(n*fanoutSubscribers) / elapsed.Seconds()
	b.ReportMetric(rate, "delivered/s")
	b.ReportMetric(float64(lat.quantile(0.99).Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op")
	return rate
}

var rawFanoutRate float64

// BenchmarkPubFanout: one publisher, 100 subscribers spread over two
// gateways; raw NATS core pub/sub (100 subscriber connections) as baseline.
// Run both in one go: -bench PubFanout -benchtime 20000x.
func BenchmarkPubFanout(b *testing.B) {
	srv := natstest.RunServer(b, nil)
	b.Run("raw-nats", func(b *testing.B) {
		f := newFanout(fanoutSubscribers)
		for i := range fanoutSubscribers {
			nc, err := nats.Connect(srv.URL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Subscribe("bench.fanout", func(m *nats.Msg) { f.record(i, m.Data) }); err != nil {
				b.Fatal(err)
			}
			_ = nc.Flush()
		}
		pub, err := nats.Connect(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer pub.Close()
		b.ResetTimer()
		elapsed := f.publish(b, b.N, func(body []byte) { _ = pub.Publish("bench.fanout", body) })
		rawFanoutRate = report(b, b.N, elapsed, &f.lat)
	})
	b.Run("middleman", func(b *testing.B) {
		gws := harness.StartN(b, 2, srv.URL(), mmConfig(benchConfig))
		f := newFanout(fanoutSubscribers)
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		var conns []*websocket.Conn
		defer func() {
			cancel()
			for _, ws := range conns {
				_ = ws.CloseNow()
			}
			wg.Wait()
		}()
		for i := range fanoutSubscribers {
			c := dial(b, gws[i%2], svcKey)
			conns = append(conns, c.ws)
			c.send("SUB", "fanout", "")
			c.sync()
			wg.Add(1)
			go func() {
				defer wg.Done()
				readBodies(c.ws, func(body []byte) { f.record(i, body) })
			}()
		}
		pub := dial(b, gws[0], svcKey)
		b.ResetTimer()
		elapsed := f.publish(b, b.N, func(body []byte) {
			fr := middleman.Frame{Cmd: "PUB", Key: "fanout", Body: body}
			if err := pub.ws.Write(ctx, websocket.MessageText, fr.Bytes()); err != nil {
				b.Error(err)
			}
		})
		rate := report(b, b.N, elapsed, &f.lat)
		if rawFanoutRate > 0 {
			b.ReportMetric(100*rate/rawFanoutRate, "%-of-raw")
		}
	})
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
