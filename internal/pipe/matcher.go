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
	hdrOK          = "Sb-Pipe-Ok"
	hdrContentType = "Sb-Pipe-Content-Type"
	hdrReceiver    = "Sb-Pipe-Receiver"
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
func (h *Hub) arrive(ctx context.Context, w *waiter) (*pairing, error) {
	pause := time.Duration(0)
	for {
		last, err := h.q.last(ctx, w.chFilter)
		if err != nil {
			return nil, err
		}
		switch {
		case last != nil && last.info.Role == subjects.PipeMatcher:
			// Another party is matching: wait until it releases the
			// marker (at once when it is on this gateway), polling with
			// back-off for matchers elsewhere.
			h.m.contended.Inc()
			pause = min(max(2*pause, 200*time.Microsecond), 5*time.Millisecond)
			if err := h.awaitRelease(ctx, w.chFilter, pause); err != nil {
				return nil, err
			}
			continue
		case last == nil || last.info.Role == w.role:
			var expect uint64
			if last != nil {
				expect = last.seq
			}
			seq, err := h.q.appendIf(ctx, w.entrySubj, w.chFilter, expect, w.id, 0)
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				return nil, err
			}
			w.enqueued(seq)
			return nil, nil
		}
		mseq, err := h.q.appendIf(ctx, w.markerSubj, w.chFilter, last.seq, w.id, h.opts.MarkerTTL)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		p, done, err := h.matchLocked(ctx, w, mseq)
		h.background("release", func(bctx context.Context) error {
			defer h.released(w.chFilter)
			return h.q.remove(bctx, mseq)
		})
		if err != nil || done {
			return p, err
		}
	}
}

// matchLocked claims heads of the opposite queue while w holds the
// channel's marker mseq. It returns the pairing, or done with a nil
// pairing when w was appended instead, or neither when it held the
// marker too long and must start over. A claimed head's entry is deleted
// before the pairing is returned, so listings never show a party that
// was already served.
func (h *Hub) matchLocked(ctx context.Context, w *waiter, mseq uint64) (*pairing, bool, error) {
	deadline := time.Now().Add(h.opts.MarkerTTL / 3)
	for time.Now().Before(deadline) {
		head, err := h.q.first(ctx, w.oppFilter)
		if err != nil {
			return nil, false, err
		}
		if head == nil {
			// Nobody left to pair with: wait in line. The marker is the
			// channel's newest entry, so the append cannot conflict
			// unless the marker expired.
			seq, err := h.q.appendIf(ctx, w.entrySubj, w.chFilter, mseq, w.id, 0)
			if errors.Is(err, errConflict) {
				return nil, false, nil
			}
			if err != nil {
				return nil, false, err
			}
			w.enqueued(seq)
			return nil, true, nil
		}
		p, err := h.claim(ctx, w, head)
		if err != nil {
			// Not the head's fault (w left, or the stream failed after a
			// yes, when a later claim finds the head taken and drops it).
			return nil, true, err
		}
		rerr := h.q.remove(ctx, head.seq)
		if p != nil {
			if rerr != nil {
				h.log.Debug("pipe: claimed entry not deleted; the next matcher drops it", "err", rerr)
			}
			return p, true, nil
		}
		if rerr != nil {
			return nil, false, rerr
		}
	}
	return nil, false, nil
}

// claim asks head's gateway to pair its waiting party with w. It returns
// nil, nil when that party is gone or already taken.
func (h *Hub) claim(ctx context.Context, w *waiter, head *entry) (*pairing, error) {
	var p *pairing
	var err error
	path := "remote"
	if head.info.Gateway == h.id {
		path = "local"
		p, err = h.claimLocal(ctx, w, head)
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
func (h *Hub) claimLocal(ctx context.Context, w *waiter, head *entry) (*pairing, error) {
	other := h.lookup(head.id)
	if other == nil {
		return nil, nil
	}
	c := &claim{local: newLocalPipe(), reply: make(chan claimAnswer, 1), contentType: w.contentType}
	if !other.offer(c) {
		return nil, nil
	}
	select {
	case a := <-c.reply:
		if !a.ok {
			return nil, nil
		}
		if w.role == subjects.PipeProducer {
			return &pairing{sink: newLocalSink(c.local, w.ctx), local: true}, nil
		}
		return &pairing{source: newLocalSource(c.local, w.ctx), contentType: a.contentType, local: true}, nil
	case <-ctx.Done():
		c.local.abort(fmt.Errorf("%w: partner left while pairing", ErrPartnerLost))
		return nil, ctx.Err()
	}
}

// claimRemote sends a claim to the gateway holding head. A consumer
// offers a fresh natsio receiver (fresh per claim, so a late answer can
// never attach a second sender); a producer offers its content type and
// opens the stream once accepted.
func (h *Hub) claimRemote(ctx context.Context, w *waiter, head *entry) (*pairing, error) {
	subj, err := subjects.PipeClaim(head.info.Gateway, head.id)
	if err != nil {
		return nil, nil
	}
	msg := nats.NewMsg(subj)
	var r *natsio.Receiver
	if w.role == subjects.PipeConsumer {
		if r, err = natsio.NewReceiver(w.ctx, h.nc, h.opts.Stream); err != nil {
			return nil, fmt.Errorf("%w: receiver: %v", ErrUnavailable, err)
		}
		msg.Header.Set(hdrReceiver, r.Subject())
	} else {
		msg.Header.Set(hdrContentType, w.contentType)
	}
	cctx, cancel := context.WithTimeout(ctx, h.opts.ClaimTimeout)
	resp, err := h.nc.RequestMsgWithContext(cctx, msg)
	cancel()
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
		return &pairing{source: r, contentType: resp.Header.Get(hdrContentType)}, nil
	}
	s, err := natsio.NewSender(w.ctx, h.nc, resp.Header.Get(hdrReceiver), h.opts.Stream)
	if err != nil {
		return nil, fmt.Errorf("%w: open stream: %v", ErrPartnerLost, err)
	}
	return &pairing{sink: s}, nil
}

// onClaim hands a claim from another gateway to the waiting party.
func (h *Hub) onClaim(m *nats.Msg) {
	c := &claim{msg: m, contentType: m.Header.Get(hdrContentType), receiver: m.Header.Get(hdrReceiver)}
	_, id, err := subjects.ParsePipeClaim(m.Subject)
	if err != nil || m.Reply == "" {
		return
	}
	w := h.lookup(id)
	if w == nil || (w.role == subjects.PipeProducer) == (c.receiver == "") || !w.offer(c) {
		h.refuse(c)
	}
}

// accept completes a claim a waiting party got: it opens its end of the
// transfer and says yes.
func (h *Hub) accept(wctx context.Context, w *waiter, c *claim) (*pairing, error) {
	if wctx.Err() != nil {
		h.refuse(c)
		return nil, wctx.Err()
	}
	if c.local != nil {
		c.reply <- claimAnswer{ok: true, contentType: w.contentType}
		if w.role == subjects.PipeProducer {
			return &pairing{sink: newLocalSink(c.local, w.ctx), local: true}, nil
		}
		return &pairing{source: newLocalSource(c.local, w.ctx), contentType: c.contentType, local: true}, nil
	}
	reply := nats.NewMsg(c.msg.Reply)
	reply.Header.Set(hdrOK, "1")
	if w.role == subjects.PipeProducer {
		// Open the stream first: a "yes" reaches the consumer only when
		// its receiver already knows its sender.
		s, err := natsio.NewSender(w.ctx, h.nc, c.receiver, h.opts.Stream)
		if err != nil {
			h.refuse(c)
			return nil, fmt.Errorf("%w: open stream: %v", ErrPartnerLost, err)
		}
		reply.Header.Set(hdrContentType, w.contentType)
		if err := h.nc.PublishMsg(reply); err != nil {
			_ = s.CloseWithError("claim answer lost")
			return nil, fmt.Errorf("%w: answer claim: %v", ErrUnavailable, err)
		}
		return &pairing{sink: s}, nil
	}
	r, err := natsio.NewReceiver(w.ctx, h.nc, h.opts.Stream)
	if err != nil {
		h.refuse(c)
		return nil, fmt.Errorf("%w: receiver: %v", ErrUnavailable, err)
	}
	reply.Header.Set(hdrReceiver, r.Subject())
	if err := h.nc.PublishMsg(reply); err != nil {
		_ = r.CloseWithError("claim answer lost")
		return nil, fmt.Errorf("%w: answer claim: %v", ErrUnavailable, err)
	}
	return &pairing{source: r, contentType: c.contentType}, nil
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

// awaitRelease waits up to pause for a matcher of this gateway to
// release channel's marker.
func (h *Hub) awaitRelease(ctx context.Context, channel string, pause time.Duration) error {
	h.relMu.Lock()
	ch, ok := h.releases[channel]
	if !ok {
		ch = make(chan struct{})
		h.releases[channel] = ch
	}
	h.relMu.Unlock()
	t := time.NewTimer(pause)
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
	if ch, ok := h.releases[channel]; ok {
		close(ch)
		delete(h.releases, channel)
	}
	h.relMu.Unlock()
}
