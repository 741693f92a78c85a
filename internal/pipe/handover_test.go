package pipe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
)

// TestWholeBodyHandedOver checks the local hand-over of a body the
// producer's read-ahead already holds entirely: the consumer gets it with
// the pairing and sends its head and body in one write (no flush), and
// the producer's Send returns once the consumer took it. A body still
// being read goes through the pipe, flushed as it comes.
func TestWholeBodyHandedOver(t *testing.T) {
	h := startHubs(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// waitProducer waits until the producer of ch is in the queue with
	// its read-ahead finished (whole) or still reading (!whole).
	waitProducer := func(ch Channel, whole bool) {
		natstest.Eventually(t, 10*time.Second, func() error {
			h.mu.Lock()
			defer h.mu.Unlock()
			for _, w := range h.waiters {
				if w.ch != ch || w.body == nil {
					continue
				}
				w.mu.Lock()
				queued := w.state == stateWaiting
				w.mu.Unlock()
				if _, ok := w.body.whole(); queued && ok == whole {
					return nil
				}
			}
			return errors.New("producer not waiting yet")
		})
	}

	ch := Channel{"ns", "whole"}
	body := []byte("the whole body")
	sent := make(chan error, 1)
	go func() {
		sent <- h.Send(ctx, ch, Input{Body: bytes.NewReader(body), Interrupt: func() {},
			Meta: Meta{ContentType: "text/plain", Length: int64(len(body)), Disposition: `attachment; filename="w.txt"`}})
	}()
	waitProducer(ch, true)
	var out recorder
	if err := h.Receive(ctx, ch, &out); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("producer: %v", err)
	}
	if !bytes.Equal(out.buf.Bytes(), body) || out.meta.Length != int64(len(body)) ||
		out.meta.Disposition != `attachment; filename="w.txt"` || out.flushes != 0 {
		t.Fatalf("handed over: body %q meta %+v flushes %d", out.buf.Bytes(), out.meta, out.flushes)
	}

	// A body the producer is still sending (longer than the read-ahead)
	// streams through the pipe, flushed as it comes.
	ch = Channel{"ns", "streamed"}
	pr, pw := io.Pipe()
	go func() {
		sent <- h.Send(ctx, ch, Input{Body: pr, Interrupt: func() { _ = pr.CloseWithError(errors.New("interrupted")) },
			Meta: Meta{ContentType: "text/plain", Length: -1}})
	}()
	start := bytes.Repeat([]byte("a"), prefetchSize+1)
	var streamed recorder
	out2 := &firstWrite{recorder: &streamed, wrote: make(chan struct{})}
	go func() {
		_, _ = pw.Write(start)
		<-out2.wrote // the rest comes only once the consumer has the start
		_, _ = pw.Write([]byte("second"))
		_ = pw.Close()
	}()
	waitProducer(ch, false)
	if err := h.Receive(ctx, ch, out2); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("streamed producer: %v", err)
	}
	if streamed.buf.String() != string(start)+"second" || streamed.flushes == 0 {
		t.Fatalf("streamed: %d bytes, flushes %d", streamed.buf.Len(), streamed.flushes)
	}
}

// firstWrite is a recorder that tells when it got its first bytes.
type firstWrite struct {
	*recorder
	wrote chan struct{}
	once  sync.Once
}

func (o *firstWrite) Write(p []byte) (int, error) {
	n, err := o.recorder.Write(p)
	o.once.Do(func() { close(o.wrote) })
	return n, err
}

// TestDirectClaimRacingEnd: a consumer's direct claim (it took the waiting
// producer's whole body with the offer) that reaches the producer as its
// wait ends (pipe.timeout, a deletion) is accepted, not refused: the
// consumer already has the body, so the producer is paired too.
func TestDirectClaimRacingEnd(t *testing.T) {
	h := startHubs(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	body := []byte("raced")
	for i := range 20 {
		ch := Channel{"ns", "raced"}
		pf := startPrefetch(bytes.NewReader(body), int64(len(body)), func(error) {})
		<-pf.done
		// Odd rounds: the producer's request itself ended (its client
		// left), not only its wait.
		rctx, leave := context.WithCancel(ctx)
		w, wctx, done, err := h.join(rctx, ch, "p", Meta{Length: int64(len(body))}, pf)
		if err != nil {
			t.Fatal(err)
		}
		w.enqueued(1)
		c := &claim{local: newLocalPipe(), reply: make(chan claimAnswer, 1)}
		w.handTo(c.local)
		c.direct = c.local.handed
		if !c.direct || !w.offer(c) {
			t.Fatalf("round %d: direct %v, offer refused", i, c.direct)
		}
		ended, end := context.WithCancel(wctx)
		end() // the wait ended as the claim came: await sees both
		if i%2 == 1 {
			leave()
		}
		p, err := h.await(ended, w)
		if err != nil || p == nil || p.sink == nil {
			t.Fatalf("round %d: await gave %v, %v; want the pairing", i, p, err)
		}
		if a := <-c.reply; !a.ok {
			t.Fatalf("round %d: direct claim refused", i)
		}
		got, err := io.ReadAll(newLocalSource(c.local, ctx)) // the consumer
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("round %d: consumer read %q, %v", i, got, err)
		}
		if err := p.sink.Close(); err != nil {
			t.Fatalf("round %d: producer: %v", i, err)
		}
		done()
		leave()
	}
}
