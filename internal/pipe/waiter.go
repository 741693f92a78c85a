package pipe

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// Channel names one pipe. Both parts are arbitrary non-empty strings.
type Channel struct {
	Namespace string
	Name      string
}

// waiterState is where a party is in its life on this gateway.
type waiterState int

const (
	stateArriving waiterState = iota // matching or appending its entry
	stateWaiting                     // its entry is in the queue
	stateClaimed                     // a partner's claim was handed to it
	stateEnded                       // left without a partner
)

// waiter is one producer or consumer request held by this gateway while
// it waits for a partner. Claims for it arrive on its gateway's claim
// subject (or in-process) and are handed to the request's goroutine.
type waiter struct {
	id   string
	ch   Channel
	role string // subjects.PipeProducer or subjects.PipeConsumer
	meta Meta   // the producer's
	ctx  context.Context

	// Subjects and filters, built once.
	entrySubj, markerSubj, chFilter, oppFilter string

	claims   chan *claim // capacity 1 (a group producer: N): a waiter is claimed at most once (N times)
	gone     chan struct{}
	goneOnce sync.Once
	goneErr  error // why gone was closed (ErrGone or errLost), set before it is

	// body is a producer's read-ahead when its whole body may be handed
	// over with a local pairing (see [localPipe.hand]); nil otherwise.
	// Set before the waiter is claimable.
	body *prefetch

	// firm is set by a group producer once it has a receiver: a consumer
	// whose n differs is then refused with 400 instead of the producer.
	// Read and written by the producer's own goroutine only.
	firm bool

	mu    sync.Mutex
	state waiterState
	seq   uint64 // its queue entry, once appended
	alone bool   // that entry was appended to an empty channel (fastpath.go)
	taken int    // claims handed over
	need  int    // claims it takes while in the queue (a group producer: the receivers it misses)
}

func newWaiter(ctx context.Context, gateway, id string, ch Channel, role string, meta Meta) (*waiter, error) {
	w := &waiter{
		id: id, ch: ch, role: role, meta: meta, ctx: ctx,
		claims: make(chan *claim, claimsCap(role, meta)), gone: make(chan struct{}),
	}
	opp := subjects.PipeConsumer
	if role == subjects.PipeConsumer {
		opp = subjects.PipeProducer
	}
	var err error
	if w.entrySubj, err = subjects.PipeEntry(ch.Namespace, ch.Name, role, gateway); err != nil {
		return nil, err
	}
	if w.markerSubj, err = subjects.PipeEntry(ch.Namespace, ch.Name, subjects.PipeMatcher, gateway); err != nil {
		return nil, err
	}
	if w.chFilter, err = subjects.PipeChannel(ch.Namespace, ch.Name); err != nil {
		return nil, err
	}
	if w.oppFilter, err = subjects.PipeRole(ch.Namespace, ch.Name, opp); err != nil {
		return nil, err
	}
	return w, nil
}

// owns is the owner of w's entry, w being held by this gateway.
func (h *Hub) owns(w *waiter) owner { return owner{h.id, w.id} }

// enqueued records that its entry seq is in the queue. It reports false
// if the waiter already ended.
func (w *waiter) enqueued(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq = seq
	if w.state == stateArriving {
		w.state = stateWaiting
	}
}

// enqueuedAlone is enqueued for an entry appended to an empty channel.
func (w *waiter) enqueuedAlone(seq uint64) {
	w.mu.Lock()
	w.alone = true
	w.mu.Unlock()
	w.enqueued(seq)
}

// handTo gives a local pairing's pipe the producer's whole body, if w is
// a producer whose read-ahead has it all.
func (w *waiter) handTo(p *localPipe) {
	if w.body != nil {
		p.hand(w.body.whole())
	}
}

// handSoonTo is handTo for a producer that claims a waiting consumer: a
// small body still being read ahead is waited for up to handWait (see
// [prefetch.wholeSoon]); a client that stalls mid-body is not waited for
// longer, its body then goes through the pipe.
func (w *waiter) handSoonTo(p *localPipe) {
	if w.body != nil {
		p.hand(w.body.wholeSoon(handWait))
	}
}

// handWait: see handSoonTo.
const handWait = 500 * time.Microsecond

// offer hands a claim to the waiter if it is still waiting and alive.
func (w *waiter) offer(c *claim) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A claim may overtake the append's acknowledgement: an entry that a
	// claimer could read is stored, so the waiter is in the queue.
	if (w.state != stateWaiting && w.state != stateArriving) || w.ctx.Err() != nil {
		return false
	}
	w.taken++
	if want := w.wants(); w.taken < want {
		c.keep = true // a group producer stays in the queue for more
	} else {
		w.state = stateClaimed
	}
	w.claims <- c
	return true
}

// end marks the waiter as leaving without a partner. It reports false if
// a claim got there first (the claim is then in w.claims).
func (w *waiter) end() (seq uint64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == stateClaimed {
		return 0, false
	}
	w.state = stateEnded
	return w.seq, true
}

// markGone ends the wait with ErrGone (the channel was deleted).
func (w *waiter) markGone() { w.endWith(ErrGone) }

// endWith ends the wait with err, once: the first reason stays.
func (w *waiter) endWith(err error) {
	w.goneOnce.Do(func() {
		w.goneErr = err
		close(w.gone)
	})
}

// waitingAt returns the position of w's queue entry while w waits in the
// queue unclaimed, else 0.
func (w *waiter) waitingAt() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != stateWaiting {
		return 0
	}
	return w.seq
}

// forget reports whether w still waits at position seq, whose entry the
// queue no longer holds (see [Hub.findLost]), and if so makes w forget
// it: the stream may give the position to another entry, which w's
// leaving must not delete. The caller then ends w with errLost.
func (w *waiter) forget(seq uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != stateWaiting || w.seq != seq {
		return false
	}
	w.seq = 0
	return true
}

// claim is a partner's offer to pair with a waiting party. Exactly one of
// local and msg is set.
type claim struct {
	// local is the in-process hand-over when both parties are here.
	local *localPipe
	// reply answers a local claim.
	reply chan claimAnswer

	// msg is a claim from another gateway (or this one's NATS path).
	msg *nats.Msg
	// meta is the producer's, when the claimer is the producer.
	meta Meta
	// receiver is the consumer's natsio subject, when the claimer is the
	// consumer.
	receiver string
	// firm is set when the claimer is a group producer that already has
	// a receiver (see [waiter.firm]).
	firm bool
	// keep tells the claimer that the holder (a group producer) waits
	// for more receivers: its queue entry stays.
	keep bool
	// mismatch is set on a claim handed to a consumer whose n differs
	// from a firm group producer's: the consumer ends with 400.
	mismatch bool
	// direct: a local consumer's claim that took the holder producer's
	// whole body with it and does not wait for the answer; the producer
	// accepts it even if its wait ended meanwhile (the offer paired them).
	direct bool
}

// claimAnswer is a holder's answer to a local claim.
type claimAnswer struct {
	ok   bool
	meta Meta // the holder producer's
	keep bool // see [claim.keep]
	// mismatch is the holder's n when it refused for a differing n.
	mismatch int
}

// pairing is what a party gets once matched: a producer a sink, a
// consumer a source and the producer's headers.
type pairing struct {
	sink   Sink
	source Source
	meta   Meta
	local  bool
	// handed: the producer's whole body went with the pairing (see
	// [localPipe.hand]); the producer writes nothing to its sink.
	handed bool
	// keep: the holder is a group producer waiting for more receivers;
	// the claimer leaves its queue entry in place.
	keep bool
}

// settleOn makes the end of p's transfer on this side (the sink's or
// source's Close) wait for done as well.
func (p *pairing) settleOn(done <-chan struct{}) {
	if p.sink != nil {
		p.sink = settledSink{p.sink, done}
	}
	if p.source != nil {
		p.source = settledSource{p.source, done}
	}
}

type settledSink struct {
	Sink
	done <-chan struct{}
}

func (s settledSink) Close() error {
	err := s.Sink.Close()
	<-s.done
	return err
}

type settledSource struct {
	Source
	done <-chan struct{}
}

func (s settledSource) Close() error {
	err := s.Source.Close()
	<-s.done
	return err
}
