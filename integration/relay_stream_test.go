package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
)

// pattern is a deterministic, incompressible-enough byte source of n bytes.
type pattern struct{ n, off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		x := uint64(p.off + int64(i))
		b[i] = byte(x*2654435761>>13) ^ byte(x>>8)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func patternSum(n int64) string {
	h := sha256.New()
	io.Copy(h, &pattern{n: n})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// heapWatch samples the live heap until stopped and reports its sustained
// peak growth over the baseline: the largest growth that held for three
// samples in a row (300 ms). Each sample follows a forced GC: the heap in
// use without one also counts garbage up to the GC goal, which in a full
// test run (a larger live heap left by earlier tests) alone passed the
// bound while the transfer itself kept little. A single sample still
// counts what was allocated while that GC ran; under the race detector on
// a loaded machine a cycle takes long enough for 1 MiB pieces in passing
// to add tens of MiB to one sample (CI saw +48 MiB once against +11-12
// typical), while a body buffered whole grows the heap for the rest of
// the transfer and still shows in three samples in a row.
func heapWatch() (stop func() uint64) {
	live := func() uint64 { return uint64(heapInUse()) }
	base := live()
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		var last [3]uint64 // growth of the last three samples
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var g uint64
			if h := live(); h > base {
				g = h - base
			}
			last[i%3] = g
			if i >= 2 {
				if held := min(last[0], last[1], last[2]); held > peak.Load() {
					peak.Store(held)
				}
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// TestRelayLargeBodies moves 100 MiB up and 100 MiB down through gateway →
// agent → upstream and checks the data and that memory stays bounded.
func TestRelayLargeBodies(t *testing.T) {
	const size = 100 << 20
	const heapBound = 48 << 20 // live heap; everything (client, gateway, agent, upstream) runs in this process
	if testing.Short() {
		t.Skip("100 MiB transfers")
	}
	var served atomic.Int64 // bytes of the download the upstream has written
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/download":
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.Header().Set("Content-Type", "application/octet-stream")
			io.Copy(countWriter{w, &served}, &pattern{n: size})
		}
	}))
	defer up.Close()
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"big": up.URL}))
	want := patternSum(size)

	t.Run("upload", func(t *testing.T) {
		stop := heapWatch()
		start := time.Now()
		req, _ := http.NewRequest("PUT", gw.URL()+"/relay/big/upload", &pattern{n: size})
		req.ContentLength = size
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		peak := stop()
		t.Logf("upload: %s, %.0f MB/s, heap peak +%d MiB", time.Since(start), size/1e6/time.Since(start).Seconds(), peak>>20)
		if resp.StatusCode != 200 || string(body) != fmt.Sprintf("%d %s", size, want) {
			t.Fatalf("upload: %d %q", resp.StatusCode, body)
		}
		if peak > heapBound {
			t.Fatalf("heap grew by %d MiB during the upload", peak>>20)
		}
	})
	t.Run("download", func(t *testing.T) {
		// The client reads 10 MiB, then stops: the relay must stall the
		// upstream with a bounded amount in flight, not take the rest of
		// the body into memory. Measured once everything stands still, so
		// no transfer races the forced GC of the measurement.
		const first = 10 << 20
		base := heapInUse()
		start := time.Now()
		resp, err := http.Get(gw.URL() + "/relay/big/download")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		if _, err := io.CopyN(h, resp.Body, first); err != nil {
			t.Fatal(err)
		}
		stalled := waitStalled(t, &served)
		held := max(heapInUse()-base, 0)
		t.Logf("client stopped after %d MiB: the upstream stalled after %d MiB, heap +%d MiB", first>>20, stalled>>20, held>>20)
		// In flight: the socket buffers of three loopback connections
		// (each can grow to several MiB) and the 8 MiB stream window; a
		// body taken whole would be 90 MiB.
		const inFlightBound = 64 << 20
		if stalled-first > inFlightBound {
			t.Fatalf("the upstream wrote %d MiB while the client read %d MiB: more than %d MiB in flight", stalled>>20, first>>20, inFlightBound>>20)
		}
		if held > heapBound {
			t.Fatalf("heap grew by %d MiB while the client did not read", held>>20)
		}
		n, err := io.Copy(h, resp.Body)
		n += first
		t.Logf("download: %s, %.0f MB/s", time.Since(start), size/1e6/time.Since(start).Seconds())
		if err != nil || n != size || fmt.Sprintf("%x", h.Sum(nil)) != want || resp.ContentLength != size {
			t.Fatalf("download: %d bytes (length %d), err %v", n, resp.ContentLength, err)
		}
	})
}

// TestRelaySSE proves a streaming response reaches the client as it is
// produced: the client reads the first event before the upstream sends
// the second.
func TestRelaySSE(t *testing.T) {
	next := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Second):
				return
			}
		}
	}))
	defer up.Close()
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"sse": up.URL}))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", gw.URL()+"/relay/sse/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	for i := 1; i <= 3; i++ {
		var lines []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
			if line == "\n" {
				break
			}
			lines = append(lines, line)
		}
		if want := fmt.Sprintf("data: event %d\n", i); len(lines) != 2 || lines[1] != want {
			t.Fatalf("event %d = %q", i, lines)
		}
		next <- struct{}{} // the upstream sends the next event only now
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("trailing data %q", rest)
	}
}

// TestRelayUploadsReuseConnection sends streamed uploads one after the
// other on one keep-alive connection: the end of one exchange must not
// disturb the client's connection for the next.
func TestRelayUploadsReuseConnection(t *testing.T) {
	const size = 2 << 20
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	defer up.Close()
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"up": up.URL}))
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	for i := 0; i < 30; i++ {
		req, _ := http.NewRequest("PUT", gw.URL()+"/relay/up/x", &pattern{n: size})
		req.ContentLength = size
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != strconv.Itoa(size) {
			t.Fatalf("upload %d: %d %q", i, resp.StatusCode, b)
		}
	}
}
