package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// lbBudget is how much later a streamed event may reach a reader through
// the shipped load balancer than straight from the gateway (SPEC §6: the
// LB adds no measurable delay). Without `option http-no-delay` HAProxy
// adds ~200 ms to every event.
const lbBudget = 50 * time.Millisecond

// lbSamples is the number of events measured per case and path.
const lbSamples = 30

// TestLBStreamLatency runs deploy/lb/haproxy.cfg in a real haproxy in front
// of one gateway and measures, straight to the gateway and through
// haproxy, how long a streamed event takes from its write to its arrival
// at the reader: a Megaphone NDJSON event on a parked /read poll, a
// Megaphone SSE event, and an SSE chunk of a relayed upstream. It fails if
// the median or p90 through haproxy is more than lbBudget above direct.
//
// haproxy is installed with apt-get when missing and the test runs as
// root (as deploy/local/run-cluster.sh does); otherwise the test is
// skipped, unless SB_REQUIRE_HAPROXY=1 (CI) makes that a failure.
func TestLBStreamLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("starts haproxy and measures 180 events")
	}
	bin := haproxyBinary(t)
	up := newSSEUpstream(t)
	gw := harness.StartEmbedded(t, func(c *gateway.Config) {
		relayConfig(c)
		c.Megaphone.PollDuration = 2 * time.Minute // one poll carries every event of a case
		c.Log.Level = "info"
	})
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"sse": up.srv.URL}))
	client := testClient(t)
	lb := startHAProxy(t, bin, client, gw.URL())

	cases := []struct {
		name    string
		measure func(t *testing.T, base string) []time.Duration
	}{
		{"megaphone-ndjson", func(t *testing.T, base string) []time.Duration {
			return measureMegaphone(t, client, base, false)
		}},
		{"megaphone-sse", func(t *testing.T, base string) []time.Duration {
			return measureMegaphone(t, client, base, true)
		}},
		{"relay-sse", func(t *testing.T, base string) []time.Duration {
			return measureRelay(t, client, base, up)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			direct := summarize(tc.measure(t, gw.URL()))
			via := summarize(tc.measure(t, lb))
			t.Logf("write→read over %d events: direct p50 %s p90 %s; through haproxy p50 %s p90 %s",
				lbSamples, direct.p50, direct.p90, via.p50, via.p90)
			if via.p50 > direct.p50+lbBudget || via.p90 > direct.p90+lbBudget {
				t.Errorf("haproxy adds more than %s to streamed events (p50 %s vs %s, p90 %s vs %s): is `option http-no-delay` in deploy/lb/haproxy.cfg?",
					lbBudget, via.p50, direct.p50, via.p90, direct.p90)
			}
		})
	}
}

// latencies is the median and 90th percentile of a sample.
type latencies struct{ p50, p90 time.Duration }

func summarize(d []time.Duration) latencies {
	s := slices.Clone(d)
	slices.Sort(s)
	return latencies{p50: s[len(s)/2], p90: s[len(s)*9/10]}
}

// measureMegaphone parks a /read on a new channel at base (SSE when sse),
// then writes lbSamples events one at a time through base, each after the
// previous one arrived, and returns each write→read latency.
func measureMegaphone(t *testing.T, c *http.Client, base string, sse bool) []time.Duration {
	t.Helper()
	var ch struct{ ProducerAddress, ConsumerAddress string }
	r := doWith(t, c, "POST", base+"/create", nil, nil)
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &ch) != nil {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	accept := "application/x-ndjson"
	if sse {
		accept = "text/event-stream"
	}
	events, stop := openStream(t, c, base+"/read/"+ch.ConsumerAddress, accept)
	defer stop()
	return measureEach(t, events, func(i int) {
		body := fmt.Sprintf(`{"n":%d}`, i)
		r := doWith(t, c, "POST", base+"/write/"+ch.ProducerAddress+"/lb", strings.NewReader(body),
			map[string]string{"Content-Type": "application/json"})
		if r.status != http.StatusCreated {
			t.Fatalf("write %d: %d %s", i, r.status, r.body)
		}
	})
}

// measureRelay opens an SSE stream of the upstream through the relay at
// base and has the upstream send lbSamples events on it one at a time.
func measureRelay(t *testing.T, c *http.Client, base string, up *sseUpstream) []time.Duration {
	t.Helper()
	name := fmt.Sprintf("s%d", up.seq.Add(1))
	next := up.stream(name)
	events, stop := openStream(t, c, base+"/relay/sse/events/"+name, "text/event-stream")
	defer stop()
	return measureEach(t, events, func(int) {
		select {
		case next <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("the upstream's SSE handler is not waiting for the next event")
		}
	})
}

// measureEach calls send(i) and waits for the event it causes on events,
// two warm-up rounds and then lbSamples measured ones.
func measureEach(t *testing.T, events <-chan time.Time, send func(i int)) []time.Duration {
	t.Helper()
	const warmup = 2
	var out []time.Duration
	for i := range lbSamples + warmup {
		start := time.Now()
		send(i)
		select {
		case at, ok := <-events:
			if !ok {
				t.Fatalf("event %d: the stream ended", i)
			}
			if i >= warmup {
				out = append(out, at.Sub(start))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d did not arrive within 10 s", i)
		}
	}
	return out
}

// openStream GETs url with Accept accept and returns a channel that gets
// the arrival time of every event (every line of an NDJSON body, every SSE
// message with a data field) and a function that ends the request.
func openStream(t *testing.T, c *http.Client, url, accept string) (<-chan time.Time, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	events := make(chan time.Time, lbSamples+8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(events)
		readEvents(resp.Body, accept == "text/event-stream", events)
	}()
	return events, func() { cancel(); resp.Body.Close(); <-done }
}

// readEvents sends the arrival time of each event read from r.
func readEvents(r io.Reader, sse bool, events chan<- time.Time) {
	br := bufio.NewReader(r)
	hasData := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		switch {
		case !sse:
			events <- time.Now()
		case strings.HasPrefix(line, "data:"):
			hasData = true
		case line == "\n" && hasData:
			events <- time.Now()
			hasData = false
		}
	}
}

// sseUpstream serves GET /events/{name} as SSE: a retry field at once,
// then one event each time the test sends on stream(name).
type sseUpstream struct {
	srv     *httptest.Server
	seq     atomic.Int64
	mu      sync.Mutex
	streams map[string]chan struct{}
}

// stream is the channel that makes stream name send its next event.
func (u *sseUpstream) stream(name string) chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.streams[name] == nil {
		u.streams[name] = make(chan struct{})
	}
	return u.streams[name]
}

func newSSEUpstream(t *testing.T) *sseUpstream {
	u := &sseUpstream{streams: map[string]chan struct{}{}}
	stop := make(chan struct{})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := u.stream(strings.TrimPrefix(r.URL.Path, "/events/"))
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = io.WriteString(w, "retry: 500\n\n")
		w.(http.Flusher).Flush()
		for i := 0; ; i++ {
			select {
			case <-next:
			case <-r.Context().Done():
				return
			case <-stop:
				return
			}
			fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(u.srv.Close)
	t.Cleanup(func() { close(stop) }) // runs first: ends handlers the relay left open
	return u
}

// testClient is an HTTP client of its own, its idle connections closed
// with the test.
func testClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 8}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// doWith is do with client c.
func doWith(t testing.TB, c *http.Client, method, url string, body io.Reader, hdr map[string]string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return result{resp.StatusCode, resp.Header, string(b)}
}

// startHAProxy runs haproxy with deploy/lb/haproxy.cfg, filled in as
// deploy/local/run-cluster.sh does but with every gateway address set to
// gatewayURL. Its listeners are loopback sockets on free ports opened
// here and inherited (fd@3, fd@4), so no port is guessed. It returns the
// balancer's base URL once /readyz answers 200 through it, and stops
// haproxy at the end of the test.
func startHAProxy(t *testing.T, bin string, c *http.Client, gatewayURL string) string {
	t.Helper()
	pub, pubAddr := inheritableListener(t)
	stats, _ := inheritableListener(t)
	gw := strings.TrimPrefix(gatewayURL, "http://")
	cmd := exec.Command(bin, "-db", "-f", "../deploy/lb/haproxy.cfg")
	cmd.ExtraFiles = []*os.File{pub, stats} // fd 3 and 4
	cmd.Env = append(os.Environ(), "SB_LB_BIND=fd@3", "SB_LB_STATS=fd@4",
		"SB_GW1_ADDR="+gw, "SB_GW2_ADDR="+gw, "SB_GW3_ADDR="+gw)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	pub.Close()
	stats.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("haproxy output (last 4 KiB):\n%s", out.tail(4096))
		}
	})
	base := "http://" + pubAddr
	natstest.Eventually(t, 30*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("haproxy exited: %v\n%s", cmd.ProcessState, out.tail(4096))
		default:
		}
		return readyThrough(c, base)
	})
	return base
}

// readyThrough is nil once base/readyz answers 200.
func readyThrough(c *http.Client, base string) error {
	resp, err := c.Get(base + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz through haproxy: %d", resp.StatusCode)
	}
	return nil
}

// inheritableListener opens a loopback listener on a free port and returns
// it as a file for a child process, and its address.
func inheritableListener(t *testing.T) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	return f, ln.Addr().String()
}

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.Bytes()
	return string(s[max(0, len(s)-n):])
}

var haproxyOnce = sync.OnceValues(findOrInstallHAProxy)

// haproxyBinary returns the haproxy executable, installing it first when
// possible; without one the test is skipped (failed under
// SB_REQUIRE_HAPROXY=1).
func haproxyBinary(t *testing.T) string {
	t.Helper()
	bin, err := haproxyOnce()
	if err == nil {
		return bin
	}
	if os.Getenv("SB_REQUIRE_HAPROXY") == "1" {
		t.Fatalf("haproxy is required (SB_REQUIRE_HAPROXY=1): %v", err)
	}
	t.Skipf("haproxy not available: %v (install it, e.g. apt-get install haproxy, or run the test as root)", err)
	return ""
}

// findOrInstallHAProxy looks haproxy up and, as root with apt-get, installs
// it the way deploy/local/run-cluster.sh's ensure_haproxy does.
func findOrInstallHAProxy() (string, error) {
	look := func() (string, error) {
		if p, err := exec.LookPath("haproxy"); err == nil {
			return p, nil
		}
		return exec.LookPath("/usr/sbin/haproxy")
	}
	if p, err := look(); err == nil {
		return p, nil
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil || os.Geteuid() != 0 {
		return "", errors.New("not installed, and cannot install it here (needs root and apt-get)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	aptRun := func(args ...string) error {
		cmd := exec.CommandContext(ctx, apt, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := aptRun("install", "-y", "-qq", "haproxy"); err != nil {
		if err := aptRun("update", "-qq"); err != nil {
			return "", err
		}
		if err := aptRun("install", "-y", "-qq", "haproxy"); err != nil {
			return "", err
		}
	}
	return look()
}
