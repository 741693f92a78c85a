package pipe_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// Benchmarks against piping-server (npm), side by side in one run:
//
//	go test ./internal/pipe -run '^$' -bench . -benchtime 2000x
//
// Each benchmark has sub-benchmarks per target: switchboard with one
// embedded gateway (producer and consumer on it), switchboard with two
// gateways on one nats-server (producer on one, consumer on the other),
// and piping-server. piping-server is installed with npm into
// $TMPDIR/switchboard-bench-piping (kept between runs) and started on a
// loopback port; without node/npm its sub-benchmarks are skipped.

const pipingVersion = "1.12.9"

// target is one server under test: urls are its base URLs (party i uses
// urls[i%len]), path(ch) is a channel's path.
type target struct {
	urls []string
	path func(ch string) string
	// pids are the processes besides this one that serve the target
	// (piping-server's node), counted in the cpu-s/GiB metric.
	pids []int
}

func (tg target) url(i int, ch string) string { return tg.urls[i%len(tg.urls)] + tg.path(ch) }

var benchClient = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: 512,
	MaxConnsPerHost:     0,
	WriteBufferSize:     256 << 10,
	ReadBufferSize:      256 << 10,
	DisableCompression:  true,
}}

// quietGateway starts a gateway without the test logger (per-request
// debug logs would dominate a benchmark).
func quietGateway(b *testing.B, modify func(*gateway.Config)) *gateway.Gateway {
	b.Helper()
	cfg := harness.Config(b)
	cfg.Log.Level = "error"
	if modify != nil {
		modify(cfg)
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = g.Shutdown(sctx)
	})
	harness.WaitReady(b, g.URL())
	return g
}

func switchboardPath(ch string) string { return "/channels/bench/" + ch }

// targets are the servers compared, each started inside its
// sub-benchmark so it lives only as long as that.
var targets = []struct {
	name  string
	start func(b *testing.B) target
}{
	{"switchboard-embedded", func(b *testing.B) target {
		g := quietGateway(b, nil)
		return target{urls: []string{g.URL()}, path: switchboardPath}
	}},
	{"switchboard-2gw", func(b *testing.B) target {
		srv := natstest.RunServer(b, nil)
		set := func(c *gateway.Config) { c.NATS.URL = srv.URL() }
		g1, g2 := quietGateway(b, set), quietGateway(b, set)
		return target{urls: []string{g1.URL(), g2.URL()}, path: switchboardPath}
	}},
	{"piping-server", func(b *testing.B) target {
		url, pid := startPipingProcess(b)
		return target{[]string{url}, func(ch string) string { return "/bench-" + ch }, []int{pid}}
	}},
}

// run runs fn as one sub-benchmark per target.
func run(b *testing.B, fn func(b *testing.B, tg target)) {
	for _, t := range targets {
		b.Run(t.name, func(b *testing.B) { fn(b, t.start(b)) })
	}
}

// handoff runs one producer-consumer exchange of body on channel ch:
// producer via party index pi, consumer via ci.
func handoff(ctx context.Context, tg target, ch string, pi, ci int, body []byte) error {
	errs := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tg.url(pi, ch), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/octet-stream")
		errs <- drain(benchClient.Do(req))
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tg.url(ci, ch), nil)
	cerr := drain(benchClient.Do(req))
	return errors.Join(cerr, <-errs)
}

func drain(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	bp := copyBuf.Get().(*[]byte)
	defer copyBuf.Put(bp)
	for {
		_, err := resp.Body.Read(*bp)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

var copyBuf = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// BenchmarkSequentialHandoff: one channel, one 1 KiB hand-off at a time.
func BenchmarkSequentialHandoff(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1<<10)
	run(b, func(b *testing.B, tg target) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_ = handoff(ctx, tg, "seq", 0, 1, body) // warm up connections
		b.ResetTimer()
		start := time.Now()
		for i := range b.N {
			if err := handoff(ctx, tg, "seq", i, i+1, body); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handoffs/s")
	})
}

// BenchmarkConcurrentChannels: 64 channels, each doing sequential 1 KiB
// hand-offs; b.N hand-offs in total.
func BenchmarkConcurrentChannels(b *testing.B) {
	const channels = 64
	body := bytes.Repeat([]byte("x"), 1<<10)
	run(b, func(b *testing.B, tg target) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var left atomic.Int64
		left.Store(int64(b.N))
		var failed atomic.Value
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for c := range channels {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch := "conc-" + strconv.Itoa(c)
				for i := 0; left.Add(-1) >= 0; i++ {
					if err := handoff(ctx, tg, ch, c+i, c+i+1, body); err != nil {
						failed.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handoffs/s")
	})
}

// BenchmarkTransfer1GiB: one 1 GiB body per iteration, producer and
// consumer on the target's first and second gateway.
func BenchmarkTransfer1GiB(b *testing.B) {
	const size = 1 << 30
	run(b, func(b *testing.B, tg target) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		b.SetBytes(size)
		cpu0 := cpuSeconds(b, tg.pids)
		b.ResetTimer()
		defer func() {
			b.ReportMetric((cpuSeconds(b, tg.pids)-cpu0)/float64(b.N), "cpu-s/GiB")
		}()
		for i := range b.N {
			errs := make(chan error, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tg.url(0, "big"), newPatternReader(size))
				req.ContentLength = size
				errs <- drain(benchClient.Do(req))
			}()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tg.url(1, "big"), nil)
			resp, err := benchClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.CopyBuffer(io.Discard, onlyReader{resp.Body}, make([]byte, 256<<10))
			resp.Body.Close()
			if err != nil || n != size {
				b.Fatalf("iteration %d: %d bytes, %v", i, n, err)
			}
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	})
}

// onlyReader hides WriterTo so CopyBuffer uses its large buffer.
type onlyReader struct{ io.Reader }

// requireNPM turns skips for a missing node/npm into failures when
// SB_REQUIRE_NPM=1.
type requireNPM struct{ testing.TB }

func (r requireNPM) Skip(args ...any) {
	r.Helper()
	if os.Getenv("SB_REQUIRE_NPM") == "1" {
		r.Fatal(append(args, "(SB_REQUIRE_NPM=1)")...)
	}
	r.TB.Skip(args...)
}

func (r requireNPM) Skipf(format string, args ...any) {
	r.Helper()
	if os.Getenv("SB_REQUIRE_NPM") == "1" {
		r.Fatalf(format+" (SB_REQUIRE_NPM=1)", args...)
	}
	r.TB.Skipf(format, args...)
}

// startPiping installs (once) and starts piping-server on a loopback port
// and returns its base URL; it skips the test or benchmark if that fails,
// or fails it with SB_REQUIRE_NPM=1 (CI installs node and npm).
func startPiping(tb testing.TB) string {
	tb.Helper()
	url, _ := startPipingProcess(tb)
	return url
}

// startPipingProcess is startPiping that also returns node's process id.
func startPipingProcess(tb testing.TB) (string, int) {
	tb.Helper()
	b := requireNPM{tb}
	dir := filepath.Join(os.TempDir(), "switchboard-bench-piping")
	entry := filepath.Join(dir, "node_modules", "piping-server", "dist", "src", "index.js")
	if _, err := os.Stat(entry); err != nil {
		if _, err := exec.LookPath("npm"); err != nil {
			b.Skip("npm not installed: no piping-server baseline")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "piping-server@"+pipingVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Skipf("npm install piping-server failed: %v\n%s", err, out)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("node", entry, "--host", "127.0.0.1", "--http-port", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		b.Skipf("start piping-server: %v", err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	natstest.Eventually(b, 30*time.Second, func() error {
		resp, err := http.Get(base + "/version")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return base, cmd.Process.Pid
}

// cpuSeconds is the user and system CPU time used so far by this process
// (client and, for Switchboard, gateways and nats-server) and by pids,
// from /proc (0 where /proc is missing).
func cpuSeconds(tb testing.TB, pids []int) float64 {
	tb.Helper()
	var total float64
	for _, pid := range append([]int{os.Getpid()}, pids...) {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0
		}
		// Fields after the command name (which may hold spaces): state is
		// field 3, utime and stime fields 14 and 15, in clock ticks (100/s
		// on Linux).
		rest := raw[bytes.LastIndexByte(raw, ')')+2:]
		f := bytes.Fields(rest)
		if len(f) < 13 {
			return 0
		}
		u, _ := strconv.ParseFloat(string(f[11]), 64)
		s, _ := strconv.ParseFloat(string(f[12]), 64)
		total += (u + s) / 100
	}
	return total
}
