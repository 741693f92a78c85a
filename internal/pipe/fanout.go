package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// One sender, N receivers (piping-server's ?n=N).
//
// A producer with n > 1 is a group producer. It matches like any
// producer, under the channel's marker, but claims up to N consumer
// heads in a row; if the channel has fewer, it appends its own entry and
// keeps it until the missing receivers claimed it (each claim answer says
// "keep" until the last). So a group is formed in arrival order, and the
// next producer waits behind the whole group: FIFO between groups holds.
// Consumers carry their own n in their claims (Sb-Pipe-N); parties whose
// n differ are not paired:
//
//   - a consumer claiming a producer with another n gets 400;
//   - a producer claiming a consumer head with another n gets 400 while
//     it has no receiver yet (as piping-server answers the sender); once
//     it has one, that consumer gets 400 and leaves, the group goes on.
//
// The body is written to every receiver chunk by chunk: the next chunk is
// read once every receiver took the last one, so the slowest receiver
// sets the pace and memory stays at one buffer per group. A receiver
// whose write fails is cut off; the others go on, and the producer gets
// 200 once every receiver that stayed read the whole body (502 when none
// stayed).

// Claim headers of groups and pub/sub.
const (
	// hdrN is the claimer's n (a producer's in [Meta], a consumer's
	// alone), or the holder's n in a mismatch answer. Absent = 1.
	hdrN = "Sb-Pipe-N"
	// hdrPub marks a pub/sub producer's claim.
	hdrPub = "Sb-Pipe-Pub"
	// hdrFirm marks a claim of a group producer that has a receiver.
	hdrFirm = "Sb-Pipe-Firm"
	// hdrKeep in an answer: the holder waits for more receivers, its
	// queue entry stays.
	hdrKeep = "Sb-Pipe-Keep"
	// okMismatch is the hdrOK value of a refusal for a differing n.
	okMismatch = "n"
)

// ErrMismatch means a party's n differs from the n of the party it
// met on the channel.
var ErrMismatch = errors.New("pipe: number of receivers differs")

// ErrBadParam means a query parameter (n, pubsub, progress) is invalid.
var ErrBadParam = errors.New("pipe: bad parameter")

// mismatchError is the 400 of a party with n=own that met one with n=want.
func mismatchError(want, own int) error {
	return fmt.Errorf("%w: the number of receivers should be %d but this request has n=%d",
		ErrMismatch, max(want, 1), max(own, 1))
}

// setGroupOn writes m's n and pub/sub flag into a claim's headers.
func (m Meta) setGroupOn(h nats.Header) {
	if m.N > 1 {
		h.Set(hdrN, strconv.Itoa(m.N))
	}
	if m.Pub {
		h.Set(hdrPub, "1")
	}
}

// groupFrom reads what setGroupOn wrote; a value out of bounds counts as
// absent (n = 1).
func groupFrom(h nats.Header) (n int, pub bool) {
	if v, err := strconv.Atoi(h.Get(hdrN)); err == nil && v > 1 && v <= MaxReceiversLimit {
		n = v
	}
	return n, h.Get(hdrPub) == "1"
}

// claimsCap is the capacity of a waiter's claim channel: a group producer
// may be claimed N times.
func claimsCap(role string, m Meta) int {
	if role == subjects.PipeProducer && m.N > 1 {
		return m.N
	}
	return 1
}

// wants is how many claims the waiter accepts while it waits; w.mu held.
func (w *waiter) wants() int { return max(w.need, 1) }

// setNeed sets how many claims a group producer accepts once in the
// queue (before its entry is appended: a claim may overtake the ack).
func (w *waiter) setNeed(n int) {
	w.mu.Lock()
	w.need = n
	w.mu.Unlock()
}

// endGroup marks a group producer as leaving and refuses the claims it
// got but did not accept. It returns its queue entry (0 = none).
func (h *Hub) endGroup(w *waiter) uint64 {
	w.mu.Lock()
	w.state = stateEnded
	seq := w.seq
	w.mu.Unlock()
	for {
		select {
		case c := <-w.claims:
			h.refuse(c)
		default:
			return seq
		}
	}
}

// screenResult is what a holder does with a claim before offering it.
type screenResult int

const (
	screenOK       screenResult = iota // offer it
	screenRefuse                       // refuse it: the claimer drops the holder
	screenMismatch                     // refuse it for n: the claimer gets 400, the holder stays
)

// screen checks a claim c against its holder w: pub/sub consumers take
// only pub/sub producers, pub/sub producers take any consumer, and
// otherwise both n must agree (see the comment at the top of the file).
func screen(w *waiter, c *claim) screenResult {
	if w.meta.Pub || c.meta.Pub {
		if w.role == subjects.PipeConsumer && c.meta.Pub {
			return screenOK
		}
		return screenRefuse
	}
	if max(w.meta.N, 1) == max(c.meta.N, 1) {
		return screenOK
	}
	if w.role == subjects.PipeConsumer && c.firm {
		c.mismatch = true
		return screenOK
	}
	return screenMismatch
}

// refuseMismatch refuses a claim from another gateway because the
// holder's n is n.
func (h *Hub) refuseMismatch(c *claim, n int) {
	if c.msg == nil || c.msg.Reply == "" {
		return
	}
	reply := nats.NewMsg(c.msg.Reply)
	reply.Header.Set(hdrOK, okMismatch)
	reply.Header.Set(hdrN, strconv.Itoa(max(n, 1)))
	_ = h.nc.PublishMsg(reply)
}

// group is the receivers a group or pub/sub producer collected so far.
type group struct {
	want int
	got  []*pairing
	// pr gets the feedback: how many receivers were there when the
	// producer arrived, then each one that came later.
	pr      progress
	arrived bool
}

func (g *group) add(p *pairing) {
	g.got = append(g.got, p)
	if g.arrived {
		g.pr.joined()
	}
}

func (g *group) abort(reason string) {
	for _, p := range g.got {
		_ = p.sink.CloseWithError(reason)
	}
}

// rendezvousGroup runs a group producer (meta.N > 1) or a pub/sub
// producer (meta.Pub) from arrival to its receivers: want of them for a
// group; for pub/sub whoever waits now, at most want, without waiting.
func (h *Hub) rendezvousGroup(ctx context.Context, ch Channel, meta Meta, want int, pr progress) ([]*pairing, error) {
	start := time.Now()
	w, wctx, done, err := h.join(ctx, ch, subjects.PipeProducer, meta, nil)
	if err != nil {
		return nil, err
	}
	defer done()
	g := &group{want: want}
	if !meta.Pub {
		g.pr = pr
	}
	err = h.arriveGroup(wctx, w, g)
	if err == nil {
		// As piping-server, the first line comes once the producer is
		// registered: a receiver that reads it finds the producer.
		g.arrived = true
		g.pr.waiting(want)
		g.pr.arrived(len(g.got))
	}
	if err == nil && meta.Pub && len(g.got) < want {
		err = h.collectSubscribers(wctx, w, g)
	}
	if err == nil && !meta.Pub && len(g.got) < want {
		err = h.awaitGroup(wctx, w, g)
	}
	if err != nil {
		if seq := h.endGroup(w); seq > 0 {
			h.dequeue("dequeue", w.chFilter, seq, h.owns(w), true)
		}
		g.abort("producer left before its receivers were complete")
		return nil, h.reason(wctx, err)
	}
	h.m.wait.Observe(time.Since(start).Seconds())
	return g.got, nil
}

// arriveGroup is [Hub.arrive] for a group or pub/sub producer: under the
// channel's marker it claims consumer heads until it has g.want; short of
// them a group producer appends its entry (the rest claim it), a pub/sub
// producer does not.
func (h *Hub) arriveGroup(ctx context.Context, w *waiter, g *group) error {
	pause := time.Duration(0)
	for {
		releasedCh, unwatch := h.watchRelease(w.chFilter)
		last, err := h.q.last(ctx, w.chFilter)
		if err != nil || last == nil || last.info.Role != subjects.PipeMatcher {
			unwatch()
		}
		if err != nil {
			return err
		}
		switch {
		case last != nil && last.info.Role == subjects.PipeMatcher:
			err := h.awaitMatcher(ctx, last, releasedCh, &pause)
			unwatch()
			if err != nil {
				return err
			}
			continue
		case last == nil || last.info.Role == w.role:
			if w.meta.Pub {
				return nil // no consumer waits in the queue
			}
			var expect uint64
			if last != nil {
				expect = last.seq
			}
			w.setNeed(g.want - len(g.got))
			seq, err := h.q.appendIf(ctx, w.entrySubj, w.chFilter, expect, w.id, 0)
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				return err
			}
			w.enqueued(seq)
			return nil
		}
		mseq, err := h.q.appendIf(ctx, w.markerSubj, w.chFilter, last.seq, w.id, h.cfg.MarkerTTL)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return err
		}
		done, err := h.matchGroupLocked(ctx, w, mseq, g)
		h.background("release", func(bctx context.Context) error {
			defer h.released(w.chFilter)
			return h.q.remove(bctx, mseq)
		})
		if err != nil || done {
			return err
		}
	}
}

// matchGroupLocked claims consumer heads while w holds the marker mseq.
// It reports done when g is complete or w was appended (or, pub/sub, no
// consumer is left), neither when the marker was held too long.
func (h *Hub) matchGroupLocked(ctx context.Context, w *waiter, mseq uint64, g *group) (bool, error) {
	deadline := time.Now().Add(h.cfg.MarkerTTL / 3)
	for time.Now().Before(deadline) {
		head, err := h.q.first(ctx, w.oppFilter)
		if err != nil {
			return false, err
		}
		if head == nil {
			if w.meta.Pub {
				return true, nil
			}
			w.setNeed(g.want - len(g.got))
			seq, err := h.q.appendIf(ctx, w.entrySubj, w.chFilter, mseq, w.id, 0)
			if errors.Is(err, errConflict) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			w.enqueued(seq)
			return true, nil
		}
		w.firm = len(g.got) > 0
		p, err := h.claim(ctx, w, head, nil)
		if err != nil {
			return false, err
		}
		if rerr := h.q.remove(context.WithoutCancel(ctx), head.seq); rerr != nil {
			h.log.Debug("pipe: claimed entry not deleted; retried in the background", "err", rerr)
			h.retryRemove(head.seq, head.owner())
		}
		if p == nil {
			continue
		}
		g.add(p)
		if len(g.got) >= g.want {
			return true, nil
		}
	}
	return false, nil
}

// awaitGroup waits in line until the missing receivers claimed w.
func (h *Hub) awaitGroup(wctx context.Context, w *waiter, g *group) error {
	for len(g.got) < g.want {
		select {
		case c := <-w.claims:
			p, err := h.accept(wctx, w, c)
			if err != nil {
				return err
			}
			g.add(p)
		case <-wctx.Done():
			return wctx.Err()
		case <-w.gone:
			if errors.Is(w.goneErr, ErrGone) {
				h.m.ended.WithLabelValues("gone").Inc()
			}
			return w.goneErr
		}
	}
	return nil
}

// fanSink is one receiver of a fan-out, fed by its own goroutine.
type fanSink struct {
	s    Sink
	in   chan []byte
	out  chan error
	dead bool
}

// fanout copies src to every sink (see the comment at the top of the
// file). It returns the bytes read, the read error (nil at EOF) and,
// when no receiver read everything, an [ErrPartnerLost].
func (h *Hub) fanout(sinks []Sink, src io.Reader) (n int64, readErr, lostErr error) {
	fs := make([]*fanSink, len(sinks))
	var wg sync.WaitGroup
	for i, s := range sinks {
		f := &fanSink{s: s, in: make(chan []byte), out: make(chan error, 1)}
		fs[i] = f
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range f.in {
				_, err := f.s.Write(b)
				f.out <- err
			}
		}()
	}
	defer wg.Wait()
	stop := func() {
		for _, f := range fs {
			if !f.dead {
				f.dead = true
				close(f.in)
			}
		}
	}
	cut := func(f *fanSink, reason string) {
		f.dead = true
		close(f.in)
		_ = f.s.CloseWithError(reason)
	}
	bp := copyBufs.Get()
	defer copyBufs.Put(bp)
	alive := len(fs)
	for {
		k, rerr := src.Read(*bp)
		if k > 0 {
			chunk := (*bp)[:k]
			for _, f := range fs {
				if !f.dead {
					f.in <- chunk
				}
			}
			for _, f := range fs {
				if f.dead {
					continue
				}
				if err := <-f.out; err != nil {
					cut(f, "receiver failed")
					alive--
					h.m.transfers.WithLabelValues("consumer_lost").Inc()
				}
			}
			n += int64(k)
			if alive == 0 {
				return n, nil, fmt.Errorf("%w: every receiver left", ErrPartnerLost)
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			for _, f := range fs {
				if !f.dead {
					cut(f, "producer side failed")
				}
			}
			return n, rerr, nil
		}
	}
	live := make([]*fanSink, 0, alive)
	for _, f := range fs {
		if !f.dead {
			live = append(live, f)
		}
	}
	stop()
	wg.Wait()
	// Every receiver that stayed must read the whole body.
	errs := make([]error, len(live))
	var cw sync.WaitGroup
	for i, f := range live {
		cw.Add(1)
		go func() {
			defer cw.Done()
			errs[i] = f.s.Close()
		}()
	}
	cw.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			h.m.transfers.WithLabelValues("consumer_lost").Inc()
		}
	}
	if ok == 0 {
		return n, nil, fmt.Errorf("%w: no receiver read the whole body", ErrPartnerLost)
	}
	return n, nil, nil
}

// ReceiveOptions are a consumer's query parameters.
type ReceiveOptions struct {
	// N is the number of receivers the consumer expects its producer to
	// serve (?n=N); 0 or 1 = one.
	N int
	// PubSub makes it a pub/sub consumer (?pubsub=true), served only by
	// pub/sub producers.
	PubSub bool
}

// consumeWith waits for a producer as o says.
func (h *Hub) consumeWith(ctx context.Context, ch Channel, o ReceiveOptions) (*Delivery, error) {
	if o.PubSub {
		p, err := h.subscribe(ctx, ch)
		if err != nil {
			return nil, err
		}
		return &Delivery{Meta: p.meta, Body: p.source, Local: p.local}, nil
	}
	if o.N <= 1 {
		return h.Consume(ctx, ch)
	}
	p, err := h.rendezvous(ctx, ch, subjects.PipeConsumer, Meta{Length: -1, N: o.N}, nil)
	if err != nil {
		return nil, err
	}
	return &Delivery{Meta: p.meta, Body: p.source, Local: p.local}, nil
}

// sendGroup is [Hub.Send] for a group producer (n > 1) or a pub/sub
// producer, or any producer with feedback, once its body's prefetch
// started.
func (h *Hub) sendGroup(ctx context.Context, ch Channel, in Input, body *prefetch) error {
	pr := progress(in.Progress)
	want := max(in.Meta.N, 1)
	if in.Meta.Pub {
		want = h.cfg.MaxReceivers
	}
	if want > h.cfg.MaxReceivers {
		return fmt.Errorf("%w: n=%d is above pipe.max_receivers %d", ErrBadParam, want, h.cfg.MaxReceivers)
	}
	ps, err := h.rendezvousGroup(ctx, ch, in.Meta, want, pr)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		pr.line("[INFO] No receiver waits: the body was dropped.\n")
		h.m.transfers.WithLabelValues("dropped").Inc()
		return nil
	}
	pr.start(len(ps))
	sinks := make([]Sink, len(ps))
	for i, p := range ps {
		sinks[i] = p.sink
	}
	src := &countingReader{r: body.reader()}
	n, readErr, lostErr := h.fanout(sinks, src)
	switch {
	case lostErr != nil:
		return h.transferError(lostErr)
	case errors.Is(readErr, ErrLength):
		h.m.transfers.WithLabelValues("bad_length").Inc()
		return readErr
	case readErr != nil && h.stopping():
		h.m.transfers.WithLabelValues("shutdown").Inc()
		return fmt.Errorf("%w: %v", protocol.ErrShuttingDown, readErr)
	case readErr != nil:
		h.m.transfers.WithLabelValues("producer_lost").Inc()
		return fmt.Errorf("%w: %v", ErrClientGone, readErr)
	}
	h.m.transfers.WithLabelValues("ok").Inc()
	pr.sent(n)
	return nil
}
