package pipe

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// Deletions nobody waits for, and listings that stay exact.
//
// A party served on the fast path (claimAlone, head on this gateway)
// leaves the queue by a deletion that runs while the pair is answered: no
// response waits for its round trip through the JetStream API. The same
// holds for a party that leaves without a partner. Such a deletion is
// tracked here, by the gateway named in the entry's subject, until it is
// acknowledged. A listing that sees entries first asks their gateways to
// settle (the liveness subject, answered once every deletion that
// gateway had started before the question is done), then reads again
// (always: a deletion in flight at the first read may have ended before
// the question came, so the answer cannot tell). So a listing that starts after a pair was answered never shows the served
// party: its deletion had started before the answers, hence before the
// question. A gateway that crashed with a deletion pending leaves the
// entry to the sweeper, as any entry of a crashed gateway.

// maxUnwaited bounds the deletions in flight that no party waits for:
// beyond it a served party's side of the transfer ends only once its
// entry's deletion is done, as across gateways, so a gateway answering
// faster than JetStream deletes cannot pile deletions (and their
// goroutines) up.
const maxUnwaited = 128

// deletions tracks this gateway's deletions in flight.
type deletions struct {
	mu      sync.Mutex
	started uint64                    // deletions started so far; each is numbered by it
	low     uint64                    // every deletion numbered below it has ended
	live    map[uint64]struct{}       // numbers of the deletions in flight
	waits   []settleWait              // in the order of their mark
	channel map[string]*clearingEntry // by channel filter: its deletions in flight
}

// settleWait is a question that waits for every deletion numbered up to
// mark.
type settleWait struct {
	mark uint64
	done func()
}

// clearingEntry counts a channel's deletions in flight; done is closed
// when the last of them ended.
type clearingEntry struct {
	n    int
	done chan struct{}
}

// start records a deletion of an entry of channel (a channel filter)
// and returns its number and a channel to close when it ends.
func (d *deletions) start(channel string) (uint64, chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.live == nil {
		d.live = map[uint64]struct{}{}
		d.channel = map[string]*clearingEntry{}
		d.low = 1
	}
	d.started++
	n := d.started
	d.live[n] = struct{}{}
	ce := d.channel[channel]
	if ce == nil {
		ce = &clearingEntry{done: make(chan struct{})}
		d.channel[channel] = ce
	}
	ce.n++
	return n, make(chan struct{})
}

// end records that deletion n of channel is acknowledged (or failed) and
// answers the questions that waited only for it and older ones.
func (d *deletions) end(channel string, n uint64) {
	d.mu.Lock()
	delete(d.live, n)
	if ce := d.channel[channel]; ce != nil {
		if ce.n--; ce.n == 0 {
			delete(d.channel, channel)
			close(ce.done)
		}
	}
	// Advance to the oldest deletion still in flight (started+1 when
	// none): each number is passed once, so ends cost O(1) amortised even
	// when thousands of parties leave at once.
	for d.low <= d.started {
		if _, ok := d.live[d.low]; ok {
			break
		}
		d.low++
	}
	i := 0
	for i < len(d.waits) && d.waits[i].mark < d.low {
		i++
	}
	ready := d.waits[:i:i]
	d.waits = d.waits[i:]
	d.mu.Unlock()
	for _, w := range ready {
		w.done()
	}
}

// settle calls done once every deletion started before now has ended:
// at once when none is in flight, else from the goroutine that ends the
// last of them.
func (d *deletions) settle(done func()) {
	d.mu.Lock()
	if len(d.live) == 0 {
		d.mu.Unlock()
		done()
		return
	}
	d.waits = append(d.waits, settleWait{mark: d.started, done: done})
	d.mu.Unlock()
}

// inFlight is the number of deletions in flight.
func (d *deletions) inFlight() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.live)
}

// clearing returns a channel closed when this gateway's deletions in
// flight of entries of channel have all ended, or nil when none is.
func (d *deletions) clearing(channel string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ce := d.channel[channel]; ce != nil {
		return ce.done
	}
	return nil
}

// dequeue deletes the entry at seq, of channel and party o, in the
// background: its party has left the queue (served, or gone without a
// partner) and nothing waits for the deletion but listings (see above).
// The returned channel is closed when it ended. With verify the entry is
// read first and deleted only if it is still o's (see [Hub.removeOwned]):
// for a party that leaves after waiting, maybe through a NATS outage; a
// head just claimed was read a moment ago.
func (h *Hub) dequeue(what, channel string, seq uint64, o owner, verify bool) <-chan struct{} {
	n, done := h.dels.start(channel)
	h.background(what, func(ctx context.Context) error {
		defer func() {
			close(done)
			h.dels.end(channel, n)
		}()
		var err error
		if verify {
			err = h.removeOwned(ctx, seq, o)
		} else {
			err = h.q.remove(ctx, seq)
		}
		if err != nil {
			h.retryRemove(seq, o)
		}
		return err
	})
	return done
}

// removeRetries are the pauses before the retries of a deletion of an
// entry whose party left the queue (served, or gone without a partner),
// after the first attempt failed
// (JetStream without a leader, the connection down): about half a minute
// in all. The next matcher of the channel drops such an entry anyway, but
// on a channel nobody uses again it would stay in listings for good.
var removeRetries = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}

// maxRetrying bounds the deletions being retried at once: while JetStream
// is down every deletion fails, and each retry holds a goroutine for up
// to half a minute. Beyond it an entry is left to the next matcher.
const maxRetrying = 1024

// removeOwned deletes the entry at seq if it is still party o's. A queue
// that lost its state while JetStream was down (memory storage, every
// node restarted) numbers new entries from 1 again, and the position may
// then hold another party's entry, which is left alone.
func (h *Hub) removeOwned(ctx context.Context, seq uint64, o owner) error {
	e, err := h.q.at(ctx, seq)
	if err != nil || e == nil || e.owner() != o {
		return err
	}
	return h.q.remove(ctx, seq)
}

// retryRemove retries the deletion of the entry at seq, of party o, in
// the background (see removeRetries), until it succeeds or finds the
// entry gone, the retries are used up, or the hub closes. Each attempt
// deletes it only if it is still o's (see [Hub.removeOwned]).
func (h *Hub) retryRemove(seq uint64, o owner) {
	if h.retrying.Add(1) > maxRetrying {
		h.retrying.Add(-1)
		h.log.Warn("pipe: queue entry not deleted, too many deletions retrying; the next matcher of its channel drops it", "seq", seq)
		return
	}
	h.m.retried.Inc()
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		defer h.retrying.Add(-1)
		// Close ends the retries, an attempt in flight included.
		gctx, gcancel := context.WithCancel(context.Background())
		defer gcancel()
		go func() {
			select {
			case <-h.stop:
				gcancel()
			case <-gctx.Done():
			}
		}()
		for _, pause := range removeRetries {
			t := time.NewTimer(pause)
			select {
			case <-gctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(gctx, 5*time.Second)
			err := h.removeOwned(ctx, seq, o)
			cancel()
			if err == nil || gctx.Err() != nil {
				return
			}
		}
		h.log.Warn("pipe: queue entry not deleted after retries; the next matcher of its channel drops it", "seq", seq)
	}()
}

// awaitClearing waits until this gateway's deletion in flight of an entry
// of channel, if any, ended: an arrival that would act on "the channel is
// empty" then finds it so instead of a served party's entry.
func (h *Hub) awaitClearing(ctx context.Context, channel string) error {
	c := h.dels.clearing(channel)
	if c == nil {
		return nil
	}
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// settleGateways waits until every gateway of gateways finished the
// deletions it had started (see above), each asked at most for the claim
// timeout.
func (h *Hub) settleGateways(ctx context.Context, gateways map[string]bool) {
	var wg sync.WaitGroup
	// Entries can name many gateways (those that vanished, until the
	// sweeper removes their entries): ask at most maxSettlePings at once.
	sem := make(chan struct{}, maxSettlePings)
	for gw := range gateways {
		if gw == h.id {
			ch := make(chan struct{})
			h.dels.settle(func() { close(ch) })
			wg.Go(func() {
				select {
				case <-ch:
				case <-ctx.Done():
				}
			})
			continue
		}
		subj, err := subjects.PipeAlive(gw)
		if err != nil {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, h.cfg.ClaimTimeout)
			defer cancel()
			_, _ = h.nc.RequestWithContext(pctx, subj, nil)
		})
	}
	wg.Wait()
}

// maxSettlePings bounds the settle questions of one listing in flight.
const maxSettlePings = 16

// answerAlive answers a liveness question once this gateway's deletions
// in flight ended.
func (h *Hub) answerAlive(m *nats.Msg) {
	h.dels.settle(func() { _ = m.Respond(nil) })
}
