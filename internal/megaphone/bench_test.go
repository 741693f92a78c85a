package megaphone_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

const benchWriters = 64

func benchClient(conns int) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute,
	}}
}

// parallel runs n calls of fn spread over workers goroutines.
func parallel(n, workers int, fn func(worker, i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(w, i)
			}
		}()
	}
	wg.Wait()
}

// BenchmarkWrite compares POST /write through one gateway with raw
// synchronous JetStream publishes to the same stream, both from 64
// concurrent writers against the same nats-server. The two alternate in
// rounds of one second so load from elsewhere on the machine hits both
// alike; the metrics are medians over the rounds. It runs once whatever
// b.N is.
func BenchmarkWrite(b *testing.B) {
	srv := natstest.RunServer(b, nil)
	gw := harness.StartN(b, 1, srv.URL(), func(c *gateway.Config) {
		c.Log.Level = "error"
		c.Megaphone.BufferSize = 10_000_000
	})[0]
	body := `{"payload":"` + strings.Repeat("x", 100) + `"}`
	ev := []byte(`{"sid":"s","eid":"01234567890123456789012","ts":"2026-01-01T00:00:00.123456789Z","body":` + body + `}`)
	conns := make([]jetstream.JetStream, benchWriters)
	for i := range conns {
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		conns[i], _ = jetstream.New(nc)
	}
	hc := benchClient(benchWriters)
	defer hc.CloseIdleConnections()
	addrs := make([]string, benchWriters)
	for i := range addrs {
		addrs[i] = create(b, gw.URL()).ProducerAddress
	}
	// The load generator shares the two cores with the gateway and the
	// nats-server, so the primary figures use harness.LoadConn (a lean
	// keep-alive client like wrk); the net/http client is measured too.
	lean := make([]*harness.LoadConn, benchWriters)
	writeReqs := make([][]byte, benchWriters)
	host := strings.TrimPrefix(gw.URL(), "http://")
	for i := range lean {
		lc, err := harness.DialLoad(gw.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer lc.Close()
		lean[i] = lc
		writeReqs[i] = harness.LoadRequest("POST", host, "/write/"+addrs[i]+"/s",
			map[string]string{"Content-Type": "application/json"}, []byte(body))
	}
	healthReq := harness.LoadRequest("GET", host, "/healthz", nil, nil)
	raw := func(w int) error {
		_, err := conns[w].Publish(context.Background(), "sb.mp.ev.raw"+strconv.Itoa(w), ev)
		return err
	}
	viaGateway := func(w int) error {
		status, _, err := lean[w].Do(writeReqs[w])
		if err != nil {
			return err
		}
		if status != 201 {
			return fmt.Errorf("write = %d", status)
		}
		return nil
	}
	viaNetHTTP := func(w int) error {
		resp, err := hc.Post(gw.URL()+"/write/"+addrs[w]+"/s", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			return fmt.Errorf("write = %d", resp.StatusCode)
		}
		return nil
	}
	// The ceiling: the same client and server doing nothing (/healthz).
	noop := func(w int) error {
		_, _, err := lean[w].Do(healthReq)
		return err
	}
	const rounds = 5
	var rawRates, gwRates, ratios, noopRatios, netRatios []float64
	for range rounds {
		r := rateFor(b, time.Second, raw)
		g := rateFor(b, time.Second, viaGateway)
		n := rateFor(b, time.Second, noop)
		h := rateFor(b, time.Second, viaNetHTTP)
		rawRates, gwRates = append(rawRates, r), append(gwRates, g)
		ratios, noopRatios, netRatios = append(ratios, g/r), append(noopRatios, n/r), append(netRatios, h/r)
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(median(rawRates), "raw-writes/s")
	b.ReportMetric(median(gwRates), "gateway-writes/s")
	b.ReportMetric(median(ratios)*100, "gateway-%-of-raw")
	b.ReportMetric(median(noopRatios)*100, "http-noop-%-of-raw")
	b.ReportMetric(median(netRatios)*100, "nethttp-client-%-of-raw")
}

// rateFor runs fn from benchWriters goroutines for d and returns calls/s.
func rateFor(b *testing.B, d time.Duration, fn func(worker int) error) float64 {
	var n atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := fn(w); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	began := time.Now()
	wg.Wait()
	return float64(n.Load()) / time.Since(began).Seconds()
}

// BenchmarkCreate measures POST /create with 16 concurrent clients.
func BenchmarkCreate(b *testing.B) {
	gw := harness.StartEmbedded(b, func(c *gateway.Config) { c.Log.Level = "error" })
	hc := benchClient(16)
	defer hc.CloseIdleConnections()
	b.ResetTimer()
	parallel(b.N, 16, func(_, _ int) {
		resp, err := hc.Post(gw.URL()+"/create", "application/json", nil)
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Errorf("create = %d", resp.StatusCode)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

const benchGatewayEnv = "MEGAPHONE_BENCH_GATEWAY_NATS"

// runBenchGateway is the child process of BenchmarkReaders: a gateway on
// natsURL that prints its URL and runs until stdin closes.
func runBenchGateway(natsURL string) int {
	l := gateway.Loader()
	l.Getenv = func(string) string { return "" }
	var c gateway.Config
	if _, err := l.Load(nil, &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c.Listen, c.NATS.URL, c.Log.Level = "127.0.0.1:0", natsURL, "error"
	c.Megaphone.PollDuration = 10 * time.Minute
	c.Megaphone.ChannelTTL = 10 * time.Minute
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	g, err := gateway.Start(context.Background(), &c, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(g.URL())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() { // "gc" collects, "heap PATH" writes a heap profile; EOF stops
		if sc.Text() == "gc" {
			runtime.GC()
			debug.FreeOSMemory()
			fmt.Println("ok")
		}
		if path, ok := strings.CutPrefix(sc.Text(), "goroutines "); ok {
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("goroutine").WriteTo(f, 1)
				f.Close()
			}
			fmt.Println("ok")
		}
		if path, ok := strings.CutPrefix(sc.Text(), "heap "); ok {
			if f, err := os.Create(path); err == nil {
				runtime.GC()
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
			fmt.Println("ok")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// metric reads one unlabelled sample from a /metrics page.
func metric(b testing.TB, base, name string) float64 {
	r := do(b, "GET", base+"/metrics", "", "")
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(r.Body)
	if m == nil {
		b.Fatalf("metric %s missing", name)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// childGateway is a gateway in a child process (this test binary, see
// TestMain), on its own embedded-free nats-server, so that its RSS and
// goroutines are its own.
type childGateway struct {
	base  string
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startChildGateway(tb testing.TB) *childGateway {
	tb.Helper()
	srv := natstest.RunServer(tb, nil)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchGatewayEnv+"="+srv.URL())
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	c := &childGateway{stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := c.out.ReadString('\n')
	if err != nil {
		tb.Fatal(err)
	}
	c.base = strings.TrimSpace(line)
	harness.WaitReady(tb, c.base)
	return c
}

// command sends one line of runBenchGateway's protocol and waits for its
// answer.
func (c *childGateway) command(line string) {
	fmt.Fprintln(c.stdin, line)
	_, _ = c.out.ReadString('\n')
}

// BenchmarkReaders opens N readers (MEGAPHONE_BENCH_READERS, default
// 10,000) on one gateway running in a child process, so its RSS is the
// gateway's alone, then writes 1,000 events/s spread over the channels for
// 5 s and measures write→receive latency. It runs once whatever b.N is.
func BenchmarkReaders(b *testing.B) {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("MEGAPHONE_BENCH_READERS")); err == nil && v > 0 {
		n = v
	}
	child := startChildGateway(b)
	base := child.base

	hc := benchClient(64)
	addrs := make([]created, n)
	began := time.Now()
	parallel(n, 32, func(_, i int) {
		resp, err := hc.Post(base+"/create", "application/json", nil)
		if err != nil {
			b.Error(err)
			return
		}
		_ = json.NewDecoder(resp.Body).Decode(&addrs[i])
		resp.Body.Close()
	})
	createRate := float64(n) / time.Since(began).Seconds()
	hc.CloseIdleConnections()
	child.command("gc")
	rssBefore := metric(b, base, "process_resident_memory_bytes")
	heapBefore := metric(b, base, "go_memstats_heap_inuse_bytes")
	stackBefore := metric(b, base, "go_memstats_stack_inuse_bytes")
	goroutinesBefore := metric(b, base, "go_goroutines")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, DisableKeepAlives: true}}
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
		open atomic.Int64
	)
	sem := make(chan struct{}, 200)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/read/"+addrs[i].ConsumerAddress, nil)
			resp, err := rc.Do(req)
			<-sem
			if err != nil {
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("read = %d", resp.StatusCode)
				return
			}
			open.Add(1)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var ev struct{ Body int64 }
				if json.Unmarshal(sc.Bytes(), &ev) == nil {
					lat := time.Duration(time.Now().UnixNano() - ev.Body)
					mu.Lock()
					lats = append(lats, lat)
					mu.Unlock()
				}
			}
		}()
	}
	natstest.Eventually(b, 5*time.Minute, func() error {
		if got := metric(b, base, "megaphone_open_readers"); int(got) != n {
			return fmt.Errorf("%v of %d readers open", got, n)
		}
		return nil
	})
	rssAfter := metric(b, base, "process_resident_memory_bytes")
	goroutinesAfter := metric(b, base, "go_goroutines")
	if path := os.Getenv("MEGAPHONE_BENCH_HEAP"); path != "" {
		child.command("heap " + path)
		child.command("goroutines " + path + ".goroutines")
	}
	child.command("gc") // steady state: the garbage of opening collected
	rssGC := metric(b, base, "process_resident_memory_bytes")
	heapGC := metric(b, base, "go_memstats_heap_inuse_bytes")
	stackGC := metric(b, base, "go_memstats_stack_inuse_bytes")

	// 1,000 writes/s for 5 s, spread over the channels.
	wc := benchClient(32)
	const rate, dur = 1000, 5 * time.Second
	tick := time.NewTicker(time.Second / rate)
	stop := time.After(dur)
	jobs := make(chan string, rate)
	var wwg sync.WaitGroup
	for range 32 {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for addr := range jobs {
				body := strconv.FormatInt(time.Now().UnixNano(), 10)
				resp, err := wc.Post(base+"/write/"+addr+"/s", "application/json", strings.NewReader(body))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	sent := 0
loop:
	for {
		select {
		case <-tick.C:
			jobs <- addrs[rand.IntN(n)].ProducerAddress
			sent++
		case <-stop:
			break loop
		}
	}
	tick.Stop()
	close(jobs)
	wwg.Wait()
	natstest.Eventually(b, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(lats) < sent {
			return fmt.Errorf("%d of %d events received", len(lats), sent)
		}
		return nil
	})
	cancel()
	wg.Wait()
	wc.CloseIdleConnections()
	slices.Sort(lats)
	pct := func(p float64) time.Duration { return lats[int(p*float64(len(lats)-1))] }
	b.ReportMetric(float64(n), "readers")
	perReader := func(after, before float64) float64 { return (after - before) / float64(n) / 1024 }
	b.ReportMetric(perReader(rssAfter, rssBefore), "rss-KB/reader")
	b.ReportMetric(perReader(rssGC, rssBefore), "rss-after-gc-KB/reader")
	b.ReportMetric(perReader(heapGC, heapBefore), "heap-KB/reader")
	b.ReportMetric(perReader(stackGC, stackBefore), "stack-KB/reader")
	b.ReportMetric((goroutinesAfter-goroutinesBefore)/float64(n), "goroutines/reader")
	b.ReportMetric(float64(pct(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(createRate, "creates/s")
	b.Logf("readers=%d sent=%d received=%d rss %0.f→%0.f MB", n, sent, len(lats), rssBefore/1e6, rssAfter/1e6)
	if got := perReader(rssAfter, rssBefore); got > readerRSSGoal {
		b.Errorf("RSS %.1f KiB per parked reader right after opening them, goal %d KiB (issue #15; not met, README)", got, readerRSSGoal)
	}
}

// readerRSSGoal is issue #15's goal for the RSS per parked reader, in KiB.
const readerRSSGoal = 12
