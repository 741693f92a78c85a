package pipe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Claim headers between gateways.
const (
	hdrOK       = "Sb-Pipe-Ok"
	hdrReceiver = "Sb-Pipe-Receiver"
)

// arrive runs the channel's matcher step for w: pair with the head of
// the opposite queue, or append w's entry and return (nil, nil).
//
// Invariant: a channel never has producers and consumers waiting at the
// same time. Every append is a compare-and-set on the channel's newest
// entry, so the newest entry tells what waits: nothing or w's own role →
// append behind it; the opposite role → take the channel's matcher marker
// (another compare-and-set) and claim heads; a marker → someone else is
// matching, wait for it.
//
// Arrivals of one channel on this gateway run here one at a time, and the
// first step acts on this gateway's guess of the newest entry instead of
// reading it (see fastpath.go).
func (h *Hub) arrive(ctx context.Context, w *waiter) (*pairing, error) {
	leave, err := h.enterChannel(ctx, w.chFilter)
	if err != nil {
		return nil, err
	}
	defer leave()
	pause := time.Duration(0)
	guess := true
	for {
		// Watch for a local release before reading, so a release between
		// the read and the wait is not missed.
		releasedCh, unwatch := h.watchRelease(w.chFilter)
		var last *entry
		var err error
		if guess {
			// Every step below on a guess is a compare-and-set against
			// it: a wrong guess ends in errConflict and a real read.
			guess = false
			last = h.guessLast(w.chFilter)
			if last == nil {
				// "Empty", unless a party served here is still being
				// deleted: wait for that instead of finding its entry.
				err = h.awaitClearing(ctx, w.chFilter)
			}
		} else {
			last, err = h.q.last(ctx, w.chFilter)
		}
		if err != nil || last == nil || last.info.Role != subjects.PipeMatcher {
			unwatch()
		}
		if err != nil {
			return nil, err
		}
		switch {
		case last != nil && last.alone && last.info.Role != w.role && last.info.Role != subjects.PipeMatcher:
			// The only entry of the channel waits for w: claim it.
			p, err := h.claimAlone(ctx, w, last)
			if err != nil || p != nil {
				return p, err
			}
			continue // taken or gone meanwhile: read the queue
		case last != nil && last.info.Role == subjects.PipeMatcher:
			// Another party is matching: wait until it releases the marker.
			err := h.awaitMatcher(ctx, last, releasedCh, &pause)
			unwatch()
			if err != nil {
				return nil, err
			}
			continue
		case last == nil || last.info.Role == w.role:
			var expect uint64
			if last != nil {
				expect = last.seq
			}
			seq, err := h.appendIf(ctx, w.entrySubj, w.chFilter, expect, w.id, 0)
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if expect == 0 {
				w.enqueuedAlone(seq)
			} else {
				w.enqueued(seq)
			}
			h.setTail(w)
			return nil, nil
		}
		// Take the marker and, at the same time, read the head: any head
		// read is valid once the marker is ours (entries only vanish
		// between the two, and a vanished head is refused and skipped).
		type read struct {
			head *entry
			err  error
		}
		early := make(chan read, 1)
		go func() {
			head, err := h.q.first(ctx, w.oppFilter)
			early <- read{head, err}
		}()
		mseq, err := h.appendIf(ctx, w.markerSubj, w.chFilter, last.seq, w.id, h.cfg.MarkerTTL)
		first := <-early
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		p, head, done, err := h.matchLocked(ctx, w, mseq, first.head, first.err)
		if err == nil && head != nil {
			// The served party leaves the queue before anyone is
			// answered, so listings never show it.
			if rerr := h.q.remove(context.WithoutCancel(ctx), head.seq); rerr != nil {
				h.log.Debug("pipe: claimed entry not deleted; retried in the background", "err", rerr)
				h.retryRemove(head.seq, head.owner())
			}
		}
		h.background("release", func(bctx context.Context) error {
			defer h.released(w.chFilter)
			return h.q.remove(bctx, mseq)
		})
		if err != nil || done {
			return p, err
		}
	}
}

// claimAlone pairs w with head, a party of the opposite role whose entry
// was appended to an empty channel and is still the channel's newest
// (seen so by w's gateway or read), without taking the channel's marker.
// Such an entry is the channel's head for as long as it exists (nothing
// is ever inserted before an entry), so serving it first keeps FIFO, and
// its waiter's offer admits one claim only, locally or from another
// gateway: a concurrent claimer is refused, and drops the entry as for a
// party that left. Without the marker the entry is deleted by its
// position, never by purging the channel, since others may have appended
// behind it; the deletion runs while the body flows. A listing after the
// hand-off never shows the served party: for a head on this gateway the
// deletion is tracked here and listings wait for it (settle.go); for a
// head elsewhere, or with more than maxUnwaited deletions in flight, the
// claimer's side of the transfer ends only once it is done. It returns
// nil, nil when head was not there to take any more (its entry is then
// deleted).
func (h *Hub) claimAlone(ctx context.Context, w *waiter, head *entry) (*pairing, error) {
	var removed <-chan struct{}
	dequeue := func() { removed = h.dequeue("dequeue claimed", w.chFilter, head.seq, head.owner(), false) }
	// A local head's deletion starts as soon as it is taken, before its
	// party answers.
	p, err := h.claim(ctx, w, head, dequeue)
	if err != nil {
		return nil, err
	}
	if p == nil {
		// Gone, taken, or its gateway did not answer: as matchLocked does
		// with a refused head, so the next read does not find it again.
		if removed != nil {
			<-removed
			return nil, nil
		}
		return nil, h.q.remove(ctx, head.seq)
	}
	if !p.keep {
		if removed == nil {
			dequeue()
		}
		if head.info.Gateway != h.id || h.dels.inFlight() > maxUnwaited {
			// Listings ask the entry's gateway to settle, not this one;
			// or too many deletions are in flight already.
			p.settleOn(removed)
		}
	}
	return p, nil
}

// appendIf is queue.appendIf run to its answer even if ctx ends
// meanwhile: an append that was stored must be known to its waiter, which
// then removes it (an entry of nobody would show in listings, a marker
// would hold the channel until its TTL).
func (h *Hub) appendIf(ctx context.Context, subject, channel string, expect uint64, id string, ttl time.Duration) (uint64, error) {
	actx, cancel := withDefaultTimeout(context.WithoutCancel(ctx))
	defer cancel()
	return h.q.appendIf(actx, subject, channel, expect, id, ttl)
}

// matchLocked claims heads of the opposite queue while w holds the
// channel's marker mseq, starting with head (or err), read alongside the
// marker. It returns the pairing and the claimed head (whose entry the
// caller deletes before it answers, so listings never show a party that
// was already served), or done with a nil pairing
// when w was appended instead, or neither when it held the marker too
// long and must start over.
func (h *Hub) matchLocked(ctx context.Context, w *waiter, mseq uint64, head *entry, err error) (*pairing, *entry, bool, error) {
	deadline := time.Now().Add(h.cfg.MarkerTTL / 3)
	for i := 0; time.Now().Before(deadline); i++ {
		if i > 0 {
			head, err = h.q.first(ctx, w.oppFilter)
		}
		if err != nil {
			return nil, nil, false, err
		}
		if head == nil {
			// Nobody left to pair with: wait in line. The marker is the
			// channel's newest entry, so the append cannot conflict
			// unless the marker expired.
			seq, err := h.appendIf(ctx, w.entrySubj, w.chFilter, mseq, w.id, 0)
			if errors.Is(err, errConflict) {
				return nil, nil, false, nil
			}
			if err != nil {
				return nil, nil, false, err
			}
			w.enqueued(seq)
			h.setTail(w)
			return nil, nil, true, nil
		}
		p, err := h.claim(ctx, w, head, nil)
		if err != nil {
			// Not the head's fault (w left, or the stream failed after a
			// yes, when a later claim finds the head taken and drops it).
			return nil, nil, false, err
		}
		if p != nil && p.keep {
			return p, nil, true, nil // a group producer: its entry stays
		}
		if p != nil {
			return p, head, true, nil
		}
		if err := h.q.remove(ctx, head.seq); err != nil {
			return nil, nil, false, err
		}
	}
	return nil, nil, false, nil
}

// claim asks head's gateway to pair its waiting party with w. It returns
// nil, nil when that party is gone or already taken. taken, if set, is
// called as soon as a party on this gateway is known to leave the queue
// with this claim (it took the claim and keeps no entry), before it
// answers; its entry then goes whether or not the pairing completes.
func (h *Hub) claim(ctx context.Context, w *waiter, head *entry, taken func()) (*pairing, error) {
	var p *pairing
	var err error
	path := "remote"
	if head.info.Gateway == h.id {
		path = "local"
		p, err = h.claimLocal(ctx, w, head, taken)
	} else {
		p, err = h.claimRemote(ctx, w, head)
	}
	switch {
	case err != nil:
	case p == nil:
		h.m.claims.WithLabelValues("refused").Inc()
	default:
		h.m.claims.WithLabelValues("accepted").Inc()
		h.m.matches.WithLabelValues(path).Inc()
	}
	return p, err
}

// claimLocal pairs w with a party waiting on this same gateway through an
// in-process pipe.
func (h *Hub) claimLocal(ctx context.Context, w *waiter, head *entry, taken func()) (*pairing, error) {
	other := h.lookup(head.id)
	if other == nil {
		return nil, nil
	}
	c := &claim{local: newLocalPipe(), reply: make(chan claimAnswer, 1), meta: w.meta, firm: w.firm}
	switch screen(other, c) {
	case screenRefuse:
		return nil, nil
	case screenMismatch:
		return nil, mismatchError(other.meta.N, w.meta.N)
	}
	w.handSoonTo(c.local) // only for a claim that is offered
	// A consumer taking a one-to-one producer whose whole body is here
	// already takes the body with the claim and does not wait for the
	// producer's answer: the offer is the pairing (it admits one claim of
	// a live party, and the producer accepts it even if its wait ended
	// meanwhile: see accept and raced).
	if taken != nil && w.role == subjects.PipeConsumer && other.role == subjects.PipeProducer &&
		max(other.meta.N, 1) == 1 && !other.meta.Pub && !c.mismatch {
		other.handTo(c.local)
		c.direct = c.local.handed
	}
	if !other.offer(c) {
		return nil, nil
	}
	if taken != nil && !c.keep {
		taken()
	}
	if c.direct && !c.keep {
		return &pairing{source: newLocalSource(c.local, w.ctx), meta: other.meta, local: true, handed: true}, nil
	}
	select {
	case a := <-c.reply:
		if !a.ok {
			return nil, nil
		}
		if w.role == subjects.PipeProducer {
			sctx := w.ctx
			if c.direct {
				// The consumer took the whole body with its claim and
				// no longer looks for another head: a producer that
				// leaves now (or left as the claim came) must not fail
				// its read of a body already here.
				sctx = context.WithoutCancel(w.ctx)
			}
			return &pairing{sink: newLocalSink(c.local, sctx), local: true, handed: c.local.handed}, nil
		}
		return &pairing{source: newLocalSource(c.local, w.ctx), meta: a.meta, local: true, keep: a.keep, handed: c.local.handed}, nil
	case <-ctx.Done():
		c.local.abort(fmt.Errorf("%w: partner left while pairing", ErrPartnerLost))
		return nil, ctx.Err()
	}
}

// claimRemote sends a claim to the gateway holding head. A consumer
// offers a fresh natsio receiver (fresh per claim, so a late answer can
// never attach a second sender); a producer offers its headers (see
// [Meta]) and opens the stream once accepted.
func (h *Hub) claimRemote(ctx context.Context, w *waiter, head *entry) (*pairing, error) {
	subj, err := subjects.PipeClaim(head.info.Gateway, head.id)
	if err != nil {
		return nil, nil
	}
	msg := nats.NewMsg(subj)
	var r *natsio.Receiver
	if w.role == subjects.PipeConsumer {
		if r, err = natsio.NewReceiver(w.ctx, h.nc, h.cfg.Stream); err != nil {
			return nil, fmt.Errorf("%w: receiver: %v", ErrUnavailable, err)
		}
		msg.Header.Set(hdrReceiver, r.Subject())
		w.meta.setGroupOn(msg.Header)
	} else {
		w.meta.setOn(msg.Header)
	}
	if w.firm {
		msg.Header.Set(hdrFirm, "1")
	}
	// A producer's claim runs to its answer even if the producer leaves
	// meanwhile: a consumer that said yes waits for the stream, and only
	// the stream can tell it that the producer is gone (a consumer that
	// leaves is fine: its receiver tells the producer's open stream).
	base := ctx
	if w.role == subjects.PipeProducer {
		base = context.WithoutCancel(ctx)
	}
	cctx, cancel := context.WithTimeout(base, h.cfg.ClaimTimeout)
	resp, err := h.nc.RequestMsgWithContext(cctx, msg)
	cancel()
	if err == nil && resp.Header.Get(hdrOK) == okMismatch {
		if r != nil {
			_ = r.CloseWithError("claim not accepted")
		}
		n, _ := groupFrom(resp.Header)
		return nil, mismatchError(n, w.meta.N)
	}
	if err != nil || resp.Header.Get(hdrOK) != "1" {
		if r != nil {
			_ = r.CloseWithError("claim not accepted")
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			h.m.claims.WithLabelValues("dead").Inc()
			h.log.Debug("pipe claim unanswered", "gateway", head.info.Gateway, "err", err)
		}
		return nil, nil
	}
	if r != nil {
		return &pairing{source: r, meta: metaFrom(resp.Header), keep: resp.Header.Get(hdrKeep) == "1"}, nil
	}
	s, err := openSender(w.ctx, h.nc, resp.Header.Get(hdrReceiver), h.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("%w: open stream: %v", ErrPartnerLost, err)
	}
	return &pairing{sink: s}, nil
}

// openSender opens the stream to a consumer that accepted this
// gateway's producer. The consumer waits for it, and only an open stream
// can tell it that the producer left, so the hello is not cut short when
// ctx (the producer's request) ends; natsio's peer timeout bounds it.
// The open stream then ends with ctx.
func openSender(ctx context.Context, nc *nats.Conn, receiver string, opts natsio.Options) (*natsio.Sender, error) {
	sctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	s, err := natsio.NewSender(sctx, nc, receiver, opts)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	return s, nil
}

// onClaim hands a claim from another gateway to the waiting party.
func (h *Hub) onClaim(m *nats.Msg) {
	c := &claim{msg: m, receiver: m.Header.Get(hdrReceiver), firm: m.Header.Get(hdrFirm) == "1"}
	if c.receiver == "" {
		c.meta = metaFrom(m.Header) // a producer's claim
	} else {
		c.meta.N, c.meta.Pub = groupFrom(m.Header)
	}
	_, id, err := subjects.ParsePipeClaim(m.Subject)
	if err != nil || m.Reply == "" {
		return
	}
	if h.checkPeer(m.Reply) != nil {
		// Not another gateway's request: never answer where the sender chose.
		h.m.claims.WithLabelValues("foreign").Inc()
		h.log.Warn("pipe claim with a foreign reply subject dropped")
		return
	}
	w := h.lookup(id)
	if w == nil || (w.role == subjects.PipeProducer) == (c.receiver == "") {
		h.refuse(c)
		return
	}
	switch screen(w, c) {
	case screenRefuse:
		h.refuse(c)
		return
	case screenMismatch:
		h.refuseMismatch(c, w.meta.N)
		return
	}
	if !w.offer(c) {
		h.refuse(c)
	}
}

// accept completes a claim a waiting party got: it opens its end of the
// transfer and says yes.
func (h *Hub) accept(wctx context.Context, w *waiter, c *claim) (*pairing, error) {
	if wctx.Err() != nil && !c.direct {
		h.refuse(c)
		return nil, wctx.Err()
	}
	if c.mismatch {
		h.refuse(c)
		return nil, mismatchError(c.meta.N, w.meta.N)
	}
	if c.local != nil {
		if !c.direct {
			w.handTo(c.local)
		}
		c.reply <- claimAnswer{ok: true, meta: w.meta, keep: c.keep}
		if w.role == subjects.PipeProducer {
			sctx := w.ctx
			if c.direct {
				// The consumer took the whole body with its claim and
				// no longer looks for another head: a producer that
				// leaves now (or left as the claim came) must not fail
				// its read of a body already here.
				sctx = context.WithoutCancel(w.ctx)
			}
			return &pairing{sink: newLocalSink(c.local, sctx), local: true, handed: c.local.handed}, nil
		}
		return &pairing{source: newLocalSource(c.local, w.ctx), meta: c.meta, local: true, handed: c.local.handed}, nil
	}
	reply := nats.NewMsg(c.msg.Reply)
	reply.Header.Set(hdrOK, "1")
	if c.keep {
		reply.Header.Set(hdrKeep, "1")
	}
	if w.role == subjects.PipeProducer {
		// Open the stream first: a "yes" reaches the consumer only when
		// its receiver already knows its sender.
		s, err := natsio.NewSender(w.ctx, h.nc, c.receiver, h.cfg.Stream)
		if err != nil {
			h.refuse(c)
			return nil, fmt.Errorf("%w: open stream: %v", ErrPartnerLost, err)
		}
		w.meta.setOn(reply.Header)
		if err := h.nc.PublishMsg(reply); err != nil {
			_ = s.CloseWithError("claim answer lost")
			return nil, fmt.Errorf("%w: answer claim: %v", ErrUnavailable, err)
		}
		return &pairing{sink: s}, nil
	}
	r, err := natsio.NewReceiver(w.ctx, h.nc, h.cfg.Stream)
	if err != nil {
		h.refuse(c)
		return nil, fmt.Errorf("%w: receiver: %v", ErrUnavailable, err)
	}
	reply.Header.Set(hdrReceiver, r.Subject())
	if err := h.nc.PublishMsg(reply); err != nil {
		_ = r.CloseWithError("claim answer lost")
		return nil, fmt.Errorf("%w: answer claim: %v", ErrUnavailable, err)
	}
	return &pairing{source: r, meta: c.meta}, nil
}

// refuse says no to a claim.
func (h *Hub) refuse(c *claim) {
	if c.local != nil {
		c.reply <- claimAnswer{}
		return
	}
	if c.msg == nil || c.msg.Reply == "" {
		return
	}
	reply := nats.NewMsg(c.msg.Reply)
	reply.Header.Set(hdrOK, "0")
	_ = h.nc.PublishMsg(reply)
}

// releaseWatch is closed when a matcher of this gateway releases the
// channel's marker.
type releaseWatch struct {
	ch   chan struct{}
	refs int
}

// watchRelease returns a channel closed at the next local release of
// channel's marker, and a func to stop watching.
func (h *Hub) watchRelease(channel string) (<-chan struct{}, func()) {
	h.relMu.Lock()
	defer h.relMu.Unlock()
	rw := h.releases[channel]
	if rw == nil {
		rw = &releaseWatch{ch: make(chan struct{})}
		h.releases[channel] = rw
	}
	rw.refs++
	return rw.ch, func() {
		h.relMu.Lock()
		defer h.relMu.Unlock()
		rw.refs--
		if rw.refs == 0 && h.releases[channel] == rw {
			delete(h.releases, channel)
		}
	}
}

// sleepUnless waits for d, ch or the end of ctx.
func sleepUnless(ctx context.Context, ch <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
	case <-t.C:
	}
	return nil
}

// released wakes the arrivals waiting for channel's marker.
func (h *Hub) released(channel string) {
	h.relMu.Lock()
	if rw, ok := h.releases[channel]; ok {
		close(rw.ch)
		delete(h.releases, channel)
	}
	h.relMu.Unlock()
}

// awaitMatcher waits while another party holds the channel's matcher
// marker (last): a matcher on this gateway wakes released; for one
// elsewhere it polls with a back-off kept in *pause. The local wait is
// bounded too: the release may have come just before we listened.
func (h *Hub) awaitMatcher(ctx context.Context, last *entry, released <-chan struct{}, pause *time.Duration) error {
	h.m.contended.Inc()
	*pause = min(max(2**pause, 200*time.Microsecond), 5*time.Millisecond)
	wait := *pause
	if last.info.Gateway == h.id {
		wait = 50 * time.Millisecond
	}
	return sleepUnless(ctx, released, wait)
}
