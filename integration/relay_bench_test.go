package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
)

// benchSetup starts an upstream, a gateway and one agent in this process
// and returns the upstream's and the relay's base URLs, and the URL of a
// plain reverse proxy (net/http/httputil, no NATS) in front of the
// upstream: the ceiling of any relay, since it already pays the two HTTP
// exchanges every relayed request needs.
func benchSetup(b *testing.B) (direct, relayed, proxied string) {
	b.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "hello, relay")
		case "/download":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			io.CopyN(w, zeros{}, int64(n))
		case "/upload":
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
		}
	}))
	b.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	pt := http.DefaultTransport.(*http.Transport).Clone()
	pt.MaxIdleConnsPerHost, pt.DisableCompression = 256, true
	rp.Transport = pt
	px := httptest.NewServer(rp)
	b.Cleanup(px.Close)
	// Logging goes nowhere: per-request debug logs would dominate.
	gw := quietRelay(b, map[string]string{"bench": up.URL})
	return up.URL, gw + "/relay/bench", px.URL
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func benchClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 128
	return &http.Client{Transport: t}
}

// BenchmarkRelaySmall measures small GETs through gateway → agent →
// upstream next to the same load sent straight to the upstream: requests
// per second and latency percentiles, sequential (c1) and with 16
// concurrent clients (c16).
func BenchmarkRelaySmall(b *testing.B) {
	direct, relayed, proxied := benchSetup(b)
	for _, conc := range []int{1, 16} {
		for _, target := range []struct{ name, url string }{{"direct", direct}, {"proxy", proxied}, {"relay", relayed}} {
			b.Run(fmt.Sprintf("c%d/%s", conc, target.name), func(b *testing.B) {
				smallLoad(b, benchClient(), target.url+"/small", conc)
			})
		}
	}
}

func smallLoad(b *testing.B, c *http.Client, url string, conc int) {
	defer c.CloseIdleConnections()
	var next atomic.Int64
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				resp, err := c.Get(url)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests failed", n)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	// CPU time of the whole process (client, gateway, NATS, agent,
	// upstream) per request: steadier than req/s on a shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/req")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRelayLarge measures large-body throughput (MB/s) through the
// relay next to the same transfer straight to the upstream.
func BenchmarkRelayLarge(b *testing.B) {
	const size = 64 << 20
	direct, relayed, proxied := benchSetup(b)
	for _, dir := range []string{"download", "upload"} {
		for _, target := range []struct{ name, url string }{{"direct", direct}, {"proxy", proxied}, {"relay", relayed}} {
			b.Run(dir+"/"+target.name, func(b *testing.B) {
				c := benchClient()
				defer c.CloseIdleConnections()
				b.SetBytes(size)
				for range b.N {
					benchTransfer(b, c, dir, target.url, size)
				}
			})
		}
	}
}

// benchTransfer moves size bytes once through the upstream at url: a
// download (GET /download?n=size) or an upload (POST /upload).
func benchTransfer(b *testing.B, c *http.Client, dir, url string, size int64) {
	var resp *http.Response
	var err error
	if dir == "download" {
		resp, err = c.Get(url + "/download?n=" + strconv.FormatInt(size, 10))
	} else {
		req, _ := http.NewRequest("POST", url+"/upload", io.LimitReader(zeros{}, size))
		req.ContentLength = size
		resp, err = c.Do(req)
	}
	if err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || (dir == "download" && n != size) {
		b.Fatalf("%d, %d bytes", resp.StatusCode, n)
	}
}

// quietRelay starts an embedded gateway and one agent serving upstreams
// (name to target URL), both logging nothing, stopped at the end of the
// benchmark, and returns the gateway's URL.
func quietRelay(b *testing.B, upstreams map[string]string) string {
	b.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel() // bounds start-up only
	gw, err := gateway.Start(ctx, harness.Config(b), quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Shutdown(sctx)
	})
	harness.WaitReady(b, gw.URL())
	u, err := agent.StartUpstream(ctx, agentConfig(b, gw.EmbeddedURL(), upstreams), quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u.Shutdown(sctx)
	})
	return gw.URL()
}
