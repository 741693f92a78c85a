package pipe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Hub pairs this gateway's pipe producers and consumers with those of the
// whole cluster (see the package doc for the design). Create it with
// [NewHub], then [Hub.Start]; it is safe for concurrent use.
type Hub struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	cfg      Config
	replicas int             // of the queue stream
	parts    int             // partitions of the queue stream
	shutdown <-chan struct{} // closed when the gateway shuts down; nil = never
	log      *slog.Logger
	m        *metrics
	id       string // this gateway's id in subjects
	// checkPeer vets reply and stream subjects from other gateways.
	checkPeer func(string) error

	q       *queue
	subs    []*nats.Subscription
	nextID  atomic.Uint64
	bg      sync.WaitGroup // background deletes and the sweeper
	stop    chan struct{}
	closeMu sync.Once

	mu      sync.Mutex
	waiters map[string]*waiter

	relMu    sync.Mutex
	releases map[string]*releaseWatch // by channel filter

	pub pubRegistry // pub/sub consumers held here (pubsub.go)

	gateMu sync.Mutex
	gates  map[string]*arrivalGate // by channel filter (fastpath.go)

	dels     deletions    // in flight, that nobody waits for (settle.go)
	retrying atomic.Int64 // deletions being retried (settle.go)
}

// NewHub returns a Hub on deps.NC and deps.JS whose queue stream has
// deps.Replicas replicas; it logs to deps.Logger (nil = nowhere), registers
// its metrics on deps.Registry (nil = nowhere) and tells a shutdown from a
// client that went away by deps.Streams (nil = never shutting down).
func NewHub(cfg Config, deps protocol.Deps) *Hub {
	var b [8]byte
	_, _ = rand.Read(b[:])
	// Claims, answers and streams come from other gateways, whose reply
	// and stream subjects lie in the same inbox space as this one's.
	inbox := deps.NC.NewInbox()
	peers := inbox[:strings.LastIndexByte(inbox, '.')]
	check := func(s string) error { return subjects.CheckPeer(s, peers) }
	cfg = cfg.withDefaults()
	if cfg.Stream.CheckPeer == nil {
		cfg.Stream.CheckPeer = check
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		nc: deps.NC, js: deps.JS, cfg: cfg, replicas: deps.Replicas, parts: deps.Partitions, log: log.With("component", "pipe"),
		m: newMetrics(deps.Registry), checkPeer: check, id: hex.EncodeToString(b[:]),
		stop: make(chan struct{}), waiters: map[string]*waiter{}, releases: map[string]*releaseWatch{},
		gates: map[string]*arrivalGate{},
	}
	if deps.Streams != nil {
		h.shutdown = deps.Streams.Stopping()
	}
	return h
}

// onAlive answers another gateway's liveness ping, if it came from one,
// once the deletions this gateway had started are done (settle.go).
func (h *Hub) onAlive(m *nats.Msg) {
	if m.Reply != "" && h.checkPeer(m.Reply) == nil {
		h.answerAlive(m)
	}
}

// ID is this hub's gateway id, the last token of its queue entries.
func (h *Hub) ID() string { return h.id }

// Start creates the queue stream if needed and subscribes to claims,
// deletions and liveness pings.
func (h *Hub) Start(ctx context.Context) error {
	q, err := openQueue(ctx, h.nc, h.js, h.replicas, h.parts)
	if err != nil {
		return err
	}
	h.q = q
	claimSubj, err := subjects.PipeClaimAll(h.id)
	if err != nil {
		return err
	}
	aliveSubj, err := subjects.PipeAlive(h.id)
	if err != nil {
		return err
	}
	for subj, cb := range map[string]nats.MsgHandler{
		claimSubj:              h.onClaim,
		subjects.PipeGoneAll(): h.onGone,
		aliveSubj:              h.onAlive,
	} {
		sub, err := h.nc.Subscribe(subj, cb)
		if err != nil {
			h.unsubscribe()
			return fmt.Errorf("%w: subscribe: %v", ErrUnavailable, err)
		}
		h.subs = append(h.subs, sub)
	}
	if err := h.nc.FlushWithContext(ctx); err != nil {
		h.unsubscribe()
		return fmt.Errorf("%w: flush: %v", ErrUnavailable, err)
	}
	h.bg.Add(1)
	go h.sweepLoop()
	return nil
}

func (h *Hub) unsubscribe() {
	for _, s := range h.subs {
		_ = s.Unsubscribe()
	}
	h.subs = nil
}

// Close stops the sweeper and waits for background clean-up. Waiting
// parties must have ended before (their requests' contexts end first).
func (h *Hub) Close() error {
	h.closeMu.Do(func() {
		close(h.stop)
		h.unsubscribe()
	})
	h.bg.Wait()
	return nil
}

// background runs fn with a bounded context, tracked by Close.
func (h *Hub) background(what string, fn func(ctx context.Context) error) {
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := fn(ctx); err != nil {
			h.log.Debug("pipe background task failed", "task", what, "err", err)
		}
	}()
}

func (h *Hub) register(w *waiter) {
	h.mu.Lock()
	h.waiters[w.id] = w
	h.mu.Unlock()
	h.m.waiting.WithLabelValues(w.role).Inc()
}

func (h *Hub) unregister(w *waiter) {
	h.dropTail(w)
	h.mu.Lock()
	delete(h.waiters, w.id)
	h.mu.Unlock()
	h.m.waiting.WithLabelValues(w.role).Dec()
}

func (h *Hub) lookup(id string) *waiter {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiters[id]
}

// onGone ends every local waiter of a deleted channel or namespace.
func (h *Hub) onGone(m *nats.Msg) {
	ns, name, err := subjects.ParsePipeGone(m.Subject)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.waiters {
		if w.ch.Namespace == ns && (name == "" || w.ch.Name == name) {
			w.markGone()
		}
	}
}

// Produce waits for a consumer on ch and returns the sink the producer's
// body is written to. meta is what the consumer is told (see [Meta]);
// the caller vetted it.
func (h *Hub) Produce(ctx context.Context, ch Channel, meta Meta) (Sink, error) {
	p, err := h.rendezvous(ctx, ch, subjects.PipeProducer, meta, nil)
	if err != nil {
		return nil, err
	}
	return p.sink, nil
}

// Delivery is what a consumer receives: the producer's headers and its
// body.
type Delivery struct {
	Meta Meta
	Body Source
	// Local reports that the producer is held by this gateway too.
	Local bool
	// whole: Body is the producer's whole body, already here (see
	// [localPipe.hand]).
	whole bool
}

// Consume waits for a producer on ch.
func (h *Hub) Consume(ctx context.Context, ch Channel) (*Delivery, error) {
	p, err := h.rendezvous(ctx, ch, subjects.PipeConsumer, Meta{Length: -1}, nil)
	if err != nil {
		return nil, err
	}
	return &Delivery{Meta: p.meta, Body: p.source, Local: p.local, whole: p.handed}, nil
}

// join makes the waiter of one arriving party (its id unique on this
// gateway; body as in [waiter.body]), registers it, and returns it with
// its context: ctx bounded by pipe.timeout when set. done unregisters it
// and ends that context.
func (h *Hub) join(ctx context.Context, ch Channel, role string, meta Meta, body *prefetch) (*waiter, context.Context, func(), error) {
	id := strconv.FormatUint(h.nextID.Add(1), 36)
	w, err := newWaiter(ctx, h.id, id, ch, role, meta)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrBadName, err)
	}
	w.body = body
	wctx, cancel := context.WithCancel(ctx)
	stop := func() {}
	if h.cfg.Timeout > 0 {
		wctx, stop = context.WithTimeoutCause(wctx, h.cfg.Timeout, ErrTimeout)
	}
	h.register(w)
	return w, wctx, func() { h.unregister(w); stop(); cancel() }, nil
}

// rendezvous runs one party from arrival to pairing: it matches with the
// head of the opposite queue or waits in line until claimed, deleted,
// timed out or gone. meta is the producer's own (unused for a consumer);
// body, if set, is the producer's read-ahead (see [localPipe.hand]).
func (h *Hub) rendezvous(ctx context.Context, ch Channel, role string, meta Meta, body *prefetch) (*pairing, error) {
	start := time.Now()
	w, wctx, done, err := h.join(ctx, ch, role, meta, body)
	if err != nil {
		return nil, err
	}
	defer done()
	p, err := h.arrive(wctx, w)
	switch {
	case err != nil:
		if _, ok := w.end(); !ok {
			if rp := h.raced(wctx, w); rp != nil {
				p, err = rp, nil
			}
		}
	case p == nil:
		p, err = h.await(wctx, w)
	}
	if err != nil {
		return nil, h.reason(wctx, err)
	}
	h.m.wait.Observe(time.Since(start).Seconds())
	return p, nil
}

// reason turns the end of a wait into the error the client sees.
func (h *Hub) reason(wctx context.Context, err error) error {
	if wctx.Err() == nil {
		return err
	}
	cause := context.Cause(wctx)
	switch {
	case errors.Is(cause, ErrTimeout):
		h.m.ended.WithLabelValues("timeout").Inc()
		return ErrTimeout
	case h.stopping():
		h.m.ended.WithLabelValues("shutdown").Inc()
		return protocol.ErrShuttingDown
	case errors.Is(cause, context.Canceled) || errors.Is(cause, ErrClientGone):
		h.m.ended.WithLabelValues("disconnect").Inc()
		return fmt.Errorf("%w: %v", ErrClientGone, cause)
	}
	return cause
}

func (h *Hub) stopping() bool {
	if h.shutdown == nil {
		return false
	}
	select {
	case <-h.shutdown:
		return true
	default:
		return false
	}
}

// raced handles the claim that reached w before its end did: a direct
// claim (see claimLocal) had already paired them, the consumer taking the
// whole body, so w accepts it; any other is refused and the partner takes
// the next.
func (h *Hub) raced(wctx context.Context, w *waiter) *pairing {
	c := <-w.claims
	if !c.direct {
		h.refuse(c)
		return nil
	}
	p, err := h.accept(wctx, w, c)
	if err != nil {
		return nil
	}
	return p
}

// await waits in line for a claim.
func (h *Hub) await(wctx context.Context, w *waiter) (*pairing, error) {
	var err error
	gone := false
	select {
	case c := <-w.claims:
		return h.accept(wctx, w, c)
	case <-wctx.Done():
		err = wctx.Err()
	case <-w.gone:
		err = w.goneErr
		gone = errors.Is(err, ErrGone)
	}
	seq, ok := w.end()
	if !ok {
		if p := h.raced(wctx, w); p != nil {
			return p, nil
		}
	}
	if gone {
		h.m.ended.WithLabelValues("gone").Inc()
	}
	if seq > 0 {
		h.dequeue("dequeue", w.chFilter, seq, h.owns(w), true)
	}
	return nil, err
}
