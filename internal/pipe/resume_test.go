package pipe

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// endingOutput is an [Output] whose request ends (gateway shutdown) the
// moment the whole body was written to it, and that records whether it
// was interrupted, and resumed after that.
type endingOutput struct {
	recorder
	size   int
	cancel context.CancelFunc

	mu                   sync.Mutex
	interrupted, resumed bool
}

func (o *endingOutput) Write(p []byte) (int, error) {
	n, err := o.recorder.Write(p)
	if o.buf.Len() >= o.size {
		o.cancel()
	}
	return n, err
}

func (o *endingOutput) Interrupt() {
	o.mu.Lock()
	o.interrupted, o.resumed = true, false
	o.mu.Unlock()
}

func (o *endingOutput) Resume() {
	o.mu.Lock()
	o.resumed = true
	o.mu.Unlock()
}

// TestShutdownAfterWholeBody: a consumer's request that ends (shutdown)
// right after its whole body was written never leaves the producer with a
// 200 while the consumer's response stays interrupted: either both fail,
// or both succeed and the interruption is lifted so the consumer's
// response can end. On one hub and across two.
func TestShutdownAfterWholeBody(t *testing.T) {
	hubs := startHubs(t, 2)
	const size = 3 * prefetchSize
	body := bytes.Repeat([]byte("x"), size)
	for i, c := range []struct{ consumer, producer int }{{0, 0}, {0, 1}, {1, 0}, {0, 0}, {0, 1}, {1, 0}} {
		ch := Channel{"resume", string(rune('a' + i))}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cctx, ccancel := context.WithCancel(ctx)
		out := &endingOutput{size: size, cancel: ccancel}
		got := make(chan error, 1)
		go func() { got <- hubs[c.consumer].Receive(cctx, ch, out) }()
		serr := hubs[c.producer].Send(ctx, ch, Input{Body: bytes.NewReader(body), Meta: Meta{ContentType: "text/plain", Length: size}})
		rerr := <-got
		out.mu.Lock()
		interrupted, resumed := out.interrupted, out.resumed
		out.mu.Unlock()
		switch {
		case serr == nil && rerr != nil:
			t.Errorf("%v: producer acknowledged, consumer failed: %v", c, rerr)
		case rerr == nil && out.buf.Len() != size:
			t.Errorf("%v: consumer succeeded with %d of %d bytes", c, out.buf.Len(), size)
		case rerr == nil && interrupted && !resumed:
			t.Errorf("%v: consumer succeeded but its response stays interrupted (producer: %v)", c, serr)
		}
		t.Logf("%v: producer %v, consumer %v, interrupted %v, resumed %v", c, serr, rerr, interrupted, resumed)
		ccancel()
		cancel()
	}
}
