package pipe_test

import (
	"context"
	"hash/crc32"
	"io"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/subjects"
)

// patternReader yields size bytes of a fixed pseudo-random pattern
// (every byte value occurs) without holding them in memory.
type patternReader struct {
	left  int64
	block []byte
	off   int
}

func newPatternReader(size int64) *patternReader {
	block := make([]byte, 64<<10+7) // odd length: chunk borders move
	x := uint32(2463534242)
	for i := range block {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		block[i] = byte(x)
	}
	return &patternReader{left: size, block: block}
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		k := copy(p[n:min(len(p), n+int(min(r.left, int64(len(r.block)-r.off))))], r.block[r.off:])
		n += k
		r.off = (r.off + k) % len(r.block)
		r.left -= int64(k)
	}
	return n, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// heapSampler records the largest live heap while it runs (gateways,
// nats-server and clients all run in this process).
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	max  uint64
}

func sampleHeap() *heapSampler {
	s := &heapSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			s.max = max(s.max, ms.HeapAlloc)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) done() uint64 {
	close(s.stop)
	s.wg.Wait()
	return s.max
}

// TestLargeTransferConstantMemory streams 1 GiB from a producer on one
// gateway to a consumer on another and checks that it arrives intact
// while the process heap stays far below the body's size.
func TestLargeTransferConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB transfer")
	}
	const size = int64(1 << 30)
	const heapBound = 256 << 20
	e := twoOnOneServer(t, nil)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	// The bound only keeps a stuck transfer from hanging the run: this test
	// is about integrity and memory, not speed (under -race on a loaded
	// 2-core machine 1 GiB has taken more than 55 s).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src := newPatternReader(size)
	want := crc32.New(castagnoli)
	post := async(ctx, http.MethodPost, chanURL(e.url(0), "big", "one"), io.TeeReader(src, want), "application/x-big")
	e.awaitWaiting(t, "big", "one", subjects.PipeProducer, 1)

	heap := sampleHeap()
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, chanURL(e.url(1), "big", "one"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := crc32.New(castagnoli)
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	peak := heap.done()
	if err != nil || n != size {
		t.Fatalf("consumer read %d of %d bytes: %v", n, size, err)
	}
	if p := wait(t, post); p.status != http.StatusOK {
		t.Fatalf("producer: %d %s %v", p.status, p.body, p.err)
	}
	if got.Sum32() != want.Sum32() {
		t.Fatal("body corrupted")
	}
	if resp.Header.Get("Content-Type") != "application/x-big" || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("headers: %v %v", resp.Header, resp.TransferEncoding)
	}
	t.Logf("%d MiB in %v (%.0f MB/s), heap peak %d MiB (base %d MiB)",
		size>>20, elapsed.Round(time.Millisecond), float64(size)/elapsed.Seconds()/1e6, peak>>20, base.HeapAlloc>>20)
	if peak > base.HeapAlloc+heapBound {
		t.Fatalf("heap peaked at %d MiB during the transfer (base %d MiB, bound +%d MiB)", peak>>20, base.HeapAlloc>>20, heapBound>>20)
	}
}
