package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
)

// faultPattern is the block pipe bodies repeat: pseudo-random, every byte
// value occurs, odd length so chunk borders move through it.
var faultPattern = func() []byte {
	b := make([]byte, 64<<10+7)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}()

var errBodyAborted = errors.New("producer body aborted by the test")

// patternBody yields size bytes of faultPattern without holding them, at
// most rate bytes per second when rate > 0. Once abort is closed reads
// fail, so a client stuck uploading gives up.
type patternBody struct {
	size, sent int64
	off        int
	rate       float64
	start      time.Time
	abort      <-chan struct{}
}

func newPatternBody(size int64, rate float64, abort <-chan struct{}) *patternBody {
	return &patternBody{size: size, rate: rate, abort: abort}
}

func (b *patternBody) Read(p []byte) (int, error) {
	if b.sent == b.size {
		return 0, io.EOF
	}
	select {
	case <-b.abort:
		return 0, errBodyAborted
	default:
	}
	p = p[:min(int64(len(p)), 64<<10, b.size-b.sent)]
	if b.rate > 0 {
		if b.start.IsZero() {
			b.start = time.Now()
		}
		due := b.start.Add(time.Duration(float64(b.sent) / b.rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			timer := time.NewTimer(d)
			select {
			case <-timer.C:
			case <-b.abort:
				timer.Stop()
				return 0, errBodyAborted
			}
		}
	}
	n := 0
	for n < len(p) {
		k := copy(p[n:], faultPattern[b.off:])
		n += k
		b.off = (b.off + k) % len(faultPattern)
	}
	b.sent += int64(n)
	return n, nil
}

var (
	faultSumsMu sync.Mutex
	faultSums   = map[int64][32]byte{}
)

// faultSum is the SHA-256 of the first size bytes of the pattern.
func faultSum(size int64) [32]byte {
	faultSumsMu.Lock()
	defer faultSumsMu.Unlock()
	if s, ok := faultSums[size]; ok {
		return s
	}
	h := sha256.New()
	io.Copy(h, newPatternBody(size, 0, nil))
	var s [32]byte
	h.Sum(s[:0])
	faultSums[size] = s
	return s
}

func pipeURL(base, ns, name string) string {
	return base + "/channels/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
}

// pipeRead is how one consumer request ended.
type pipeRead struct {
	status int
	n      int64    // body bytes read
	sum    [32]byte // SHA-256 of them
	head   []byte   // the first bytes (error envelopes, small bodies)
	err    error    // request or body read error (a cut body)
	at     time.Time
}

// pipeConsume GETs a pipe and reads the whole body, counting bytes into
// progress (if not nil) as they arrive.
func pipeConsume(ctx context.Context, client *http.Client, u string, progress *atomic.Int64) pipeRead {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := client.Do(req)
	if err != nil {
		return pipeRead{err: err, at: time.Now()}
	}
	defer resp.Body.Close()
	h := sha256.New()
	r := pipeRead{status: resp.StatusCode}
	buf := make([]byte, 256<<10)
	for {
		k, err := resp.Body.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			if len(r.head) < 4096 {
				r.head = append(r.head, buf[:min(k, 4096-len(r.head))]...)
			}
			r.n += int64(k)
			if progress != nil {
				progress.Add(int64(k))
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			r.err = err
			break
		}
	}
	h.Sum(r.sum[:0])
	r.at = time.Now()
	return r
}

// pipeWrite is how one producer request ended.
type pipeWrite struct {
	status int
	body   string
	err    error
	at     time.Time
}

func pipeProduce(ctx context.Context, client *http.Client, u string, body io.Reader) pipeWrite {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return pipeWrite{err: err, at: time.Now()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return pipeWrite{status: resp.StatusCode, body: string(b), err: err, at: time.Now()}
}

func (w pipeWrite) String() string {
	if w.err != nil {
		return "error: " + w.err.Error()
	}
	return fmt.Sprintf("%d %s", w.status, strings.TrimSpace(w.body))
}

// handOffResult counts one hand-off's requests.
type handOffResult struct {
	producerAttempts, consumerAttempts int
	producerOK                         bool     // the producer got its 200
	errs                               []string // what the failed attempts saw, e.g. "consumer 503"
	err                                error
}

// handOff moves a size-byte pattern body from a producer to a consumer on
// base/channels/ns/name, as clients do through a load balancer: each side
// retries after an error (back-off 100 ms) up to attempts times. The
// producer's first request is sent delay after the consumer's (a negative
// delay: the consumer's after the producer's), so one side waits. It is
// done when the consumer read the whole body with the right checksum (a
// producer whose 200 was lost to a failure after delivery stops retrying
// then). A producer's 200 without a consumer holding the body would be a
// lost acknowledged transfer: an error.
func handOff(ctx context.Context, client *http.Client, base, ns, name string, size int64, attempts int, delay time.Duration) handOffResult {
	want := faultSum(size)
	u := pipeURL(base, ns, name)
	var (
		res    handOffResult
		errsMu sync.Mutex
	)
	delivered := make(chan struct{})
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !sleepCtx(pctx, delay) {
			return
		}
		for res.producerAttempts < attempts {
			select {
			case <-delivered:
				return
			default:
			}
			res.producerAttempts++
			w := pipeProduce(pctx, client, u, newPatternBody(size, 0, pctx.Done()))
			if w.err == nil && w.status == http.StatusOK {
				res.producerOK = true
				return
			}
			kind := "producer conn"
			if w.err == nil {
				kind = fmt.Sprintf("producer %d", w.status)
			}
			errsMu.Lock()
			res.errs = append(res.errs, kind)
			errsMu.Unlock()
			select {
			case <-delivered:
				return
			case <-pctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	var cerr error
	if !sleepCtx(ctx, -delay) {
		cerr = ctx.Err()
	}
	for cerr == nil {
		if ctx.Err() != nil {
			cerr = ctx.Err()
			break
		}
		res.consumerAttempts++
		r := pipeConsume(ctx, client, u, nil)
		if r.err == nil && r.status == http.StatusOK && r.n == size && r.sum == want {
			close(delivered)
			// The producer's 200 follows at once; a producer that was
			// retrying after an error waits for no one: end it.
			grace := time.AfterFunc(5*time.Second, pcancel)
			defer grace.Stop()
			break
		}
		if r.err == nil && r.status == http.StatusOK {
			cerr = fmt.Errorf("consumer got a complete-looking 200 with %d of %d bytes or a wrong checksum", r.n, size)
			break
		}
		kind := fmt.Sprintf("consumer %d", r.status)
		switch {
		case r.err != nil && r.status == 0:
			kind = "consumer conn"
		case r.err != nil:
			kind = "consumer cut"
		}
		errsMu.Lock()
		res.errs = append(res.errs, kind)
		errsMu.Unlock()
		if res.consumerAttempts >= attempts {
			cerr = fmt.Errorf("consumer failed %d times, last: %d %q %v", attempts, r.status, r.head, r.err)
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if cerr != nil {
		pcancel()
	}
	wg.Wait()
	switch {
	case cerr != nil && res.producerOK:
		res.err = fmt.Errorf("LOST: producer acknowledged (200) but %v", cerr)
	case cerr != nil:
		res.err = cerr
	}
	return res
}

// sleepCtx waits d (nothing when d <= 0) and reports whether ctx is still
// alive.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	return ctx.Err() == nil
}

// pipeWaiting reports whether someone waits on ns/name, asked through base
// (the listing is cluster-wide).
func pipeWaiting(ctx context.Context, client *http.Client, base, ns, name string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/channels/"+url.PathEscape(ns), nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var names []string
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&names); err != nil {
			return err
		}
	}
	if !slices.Contains(names, name) {
		return fmt.Errorf("%s/%s not waiting yet (%d %v)", ns, name, resp.StatusCode, names)
	}
	return nil
}

// TestFaultPipeGatewayKilledMidTransfer SIGKILLs, mid-transfer, first the
// producer's gateway, then (after it was replaced) the consumer's gateway
// of a paced 64 MiB pipe transfer between two gateways. It proves that:
//   - the surviving side gets a clean error: the consumer's chunked body is
//     cut (a read error, never a short 200 that looks complete), the
//     producer gets a connection error or a 5xx — never 200;
//   - both sides retrying through the balancer (the dead gateway replaced)
//     complete a fresh 64 MiB hand-off with the right SHA-256;
//   - a party that was waiting on the killed gateway is never paired
//     afterwards: a partner arriving later on a live gateway does not get
//     (or deliver to) it and ends with 408 after pipe.timeout; a live pair
//     on the same channel then hands off normally.
func TestFaultPipeGatewayKilledMidTransfer(t *testing.T) {
	fc := newFaultCluster(t, 2, "--pipe-timeout", "3s")
	client := faultClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	pipeKillPhase(ctx, t, fc, client, "producer")
	pipeKillPhase(ctx, t, fc, client, "consumer")
}

// pipeKillPhase runs one transfer from gateway 0 (producer) to gateway 1
// (consumer) and SIGKILLs the victim's gateway mid-transfer.
func pipeKillPhase(ctx context.Context, t *testing.T, fc *faultCluster, client *http.Client, victim string) {
	const (
		ns        = "fault"
		size      = int64(64 << 20)
		rate      = 8 << 20 // bytes/s: the transfer would take 8 s
		killAfter = 4 << 20 // consumer bytes before the kill
	)
	big, orphan := victim+"-big", victim+"-orphan"
	killIdx, survivor := 0, 1
	if victim == "consumer" {
		killIdx, survivor = 1, 0
	}
	abort := make(chan struct{})
	defer close(abort)

	var progress atomic.Int64
	readDone := make(chan pipeRead, 1)
	writeDone := make(chan pipeWrite, 1)
	go func() { readDone <- pipeConsume(ctx, client, pipeURL(fc.gws[1].URL(), ns, big), &progress) }()
	go func() {
		writeDone <- pipeProduce(ctx, client, pipeURL(fc.gws[0].URL(), ns, big), newPatternBody(size, rate, abort))
	}()
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := progress.Load(); n < killAfter {
			return fmt.Errorf("consumer has %d bytes", n)
		}
		return nil
	})

	// A party of the opposite role waits on the victim's gateway.
	orphanDone := make(chan error, 1)
	go func() {
		var err error
		if victim == "producer" {
			w := pipeProduce(ctx, client, pipeURL(fc.gws[0].URL(), ns, orphan), strings.NewReader("body of a producer whose gateway was killed"))
			if w.err == nil {
				err = fmt.Errorf("waiting producer on the killed gateway got %s", w)
			}
		} else {
			r := pipeConsume(ctx, client, pipeURL(fc.gws[1].URL(), ns, orphan), nil)
			if r.err == nil {
				err = fmt.Errorf("waiting consumer on the killed gateway got %d %q", r.status, r.head)
			}
		}
		orphanDone <- err
	}()
	natstest.Eventually(t, 10*time.Second, func() error {
		return pipeWaiting(ctx, client, fc.gws[survivor].URL(), ns, orphan)
	})

	atKill := progress.Load()
	fc.gws[killIdx].Kill()
	killed := time.Now()

	// A partner for the orphan arrives on a live gateway: it must not be
	// paired with the dead party, only time out (pipe.timeout 3 s).
	lateDone := make(chan error, 1)
	go func() {
		u := pipeURL(fc.lb.URL(), ns, orphan)
		// The balancer answers 502 with no body when its kept-alive
		// connection to the killed gateway fails: retried as a client would.
		for attempt := 1; ; attempt++ {
			if victim == "producer" {
				r := pipeConsume(ctx, client, u, nil)
				if r.err == nil && r.status == http.StatusBadGateway && len(r.head) == 0 && attempt < 3 {
					continue
				}
				if r.err != nil || r.status != http.StatusRequestTimeout || !bytes.Contains(r.head, []byte(`"TIMEOUT"`)) {
					lateDone <- fmt.Errorf("late consumer: %d %q %v, want 408 TIMEOUT", r.status, r.head, r.err)
					return
				}
			} else {
				w := pipeProduce(ctx, client, u, strings.NewReader("nobody may get this"))
				if w.err == nil && w.status == http.StatusBadGateway && w.body == "" && attempt < 3 {
					continue
				}
				if w.err != nil || w.status != http.StatusRequestTimeout || !strings.Contains(w.body, `"TIMEOUT"`) {
					lateDone <- fmt.Errorf("late producer: %s, want 408 TIMEOUT", w)
					return
				}
			}
			lateDone <- nil
			return
		}
	}()

	fc.replaceGateway(killIdx)

	var r pipeRead
	var w pipeWrite
	for got := 0; got < 2; got++ {
		select {
		case r = <-readDone:
		case w = <-writeDone:
		case <-time.After(45 * time.Second):
			t.Fatalf("%s's gateway killed: the other side did not end within 45 s", victim)
		}
	}
	if r.status != http.StatusOK || r.err == nil || r.n >= size {
		t.Fatalf("consumer: status %d, %d of %d bytes, err %v: want a 200 whose body is cut", r.status, r.n, size, r.err)
	}
	if w.err == nil && w.status < 500 {
		t.Fatalf("producer: %s; want a connection error or a 5xx", w)
	}
	if err := <-orphanDone; err != nil {
		t.Fatal(err)
	}

	retry := handOff(ctx, client, fc.lb.URL(), ns, big, size, 5, 0)
	if retry.err != nil {
		t.Fatalf("retry through the balancer: %v", retry.err)
	}
	if err := <-lateDone; err != nil {
		t.Fatal(err)
	}
	live := handOff(ctx, client, fc.lb.URL(), ns, orphan, 1<<20, 3, 0)
	if live.err != nil {
		t.Fatalf("live hand-off on the orphan's channel: %v", live.err)
	}

	side := map[string]time.Time{"consumer": r.at, "producer": w.at}
	other := "consumer"
	if victim == "consumer" {
		other = "producer"
	}
	t.Logf("pipe fault (%s's gateway SIGKILLed): body=%d MiB, consumer had %.1f MiB at the kill, read %.1f MiB then cut (%v); "+
		"producer: %s; surviving %s ended %s after the kill; retry via balancer: 64 MiB sha256 ok, producer attempts=%d consumer attempts=%d; "+
		"orphan on the dead gateway never paired (late partner 408); live hand-off on its channel ok; acknowledged=%d lost=0",
		victim, size>>20, float64(atKill)/(1<<20), float64(r.n)/(1<<20), r.err, w, other, side[other].Sub(killed).Round(time.Millisecond),
		retry.producerAttempts, retry.consumerAttempts, btoi(retry.producerOK)+btoi(live.producerOK))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
