package megaphone

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/subjects"
)

// wakeQueue is the capacity of the channel every wake-up subscription
// shares. A full queue drops wake-ups; the dispatcher then notices the
// subscription's drop count and wakes its reader anyway.
const wakeQueue = 8192

// wakeups routes wake-ups to open polls. Every poll's subscription feeds
// one shared Go channel (ChanSubscribe spawns no goroutine), so an open
// reader costs a subscription and a map entry, not a goroutine. When the
// gateway is the only one on its NATS server (embedded), a single
// subscription to every channel's wake-ups replaces the poll's own: a
// subscription costs ~1.4 KB between nats.go and the server's sublist,
// and the only wake-ups it brings that no poll here waits for are those
// of channels read by nobody at the moment (dropped by the dispatcher).
// With other gateways on the server it would bring theirs too, so there
// each poll subscribes to its channel.
type wakeups struct {
	nc    *nats.Conn
	log   *slog.Logger
	cache *existsCache
	in    chan *nats.Msg
	gone  *nats.Subscription
	// all is the subscription to every channel's wake-ups, nil when each
	// poll subscribes to its own; allDropped is its drop count last seen.
	all        *nats.Subscription
	allDropped int
	quit       chan struct{}
	done       chan struct{}

	mu      sync.Mutex
	waiters map[string]*waiter // by wake subject
	// quiet holds, under the shared subscription, the channels (by wake
	// subject) whose poll here ended with everything it was woken for
	// delivered, or that were created here, and for which no wake-up has
	// come since: nothing was stored on them after what this gateway
	// delivered, so their next poll here needs no first read (see
	// register). A wake-up of a channel with no poll open here drops its
	// entry.
	quiet     map[string]quietMark
	quietAdds int
	// quietTTL: a quiet watch older than this is not used (the channel's
	// next poll most likely ran on another gateway meanwhile).
	quietTTL time.Duration
}

// quietMark is when a channel's quiet watch began, with the shared
// subscription's drop count and the connection's reconnect count then: a
// wake-up dropped or missed while disconnected since breaks the watch.
type quietMark struct {
	at         time.Time
	dropped    int
	reconnects uint64
}

// waiter is one open poll's wake-up signal and what its wake-ups brought.
type waiter struct {
	subj string // the wake-up subject
	// evSubj is the channel's event subject: a carried event must name it.
	evSubj  string
	wake    chan struct{}
	gone    atomic.Bool
	sub     *nats.Subscription // nil under the shared subscription
	dropped int
	// notify, when set, is kicked instead of signalling wake: a parked
	// poll has no goroutine waiting on the channel.
	notify atomic.Pointer[parked]

	mu     sync.Mutex
	queue  []carried // events republished since the last take, oldest first
	spare  []carried // an empty queue a drain handed back (see recycle)
	qbytes int
	// fetch asks the next drain to read the stream: the poll's first
	// drain, a wake-up that carried no usable event, dropped wake-ups, a
	// full queue, a batch that left more behind. Queued events are then
	// dropped: the read returns them too.
	fetch bool
	// urgent: a writer met a full buffer; remove delivered events now.
	urgent bool
	// due: the poll's purge delay passed.
	due bool
}

// carried is an event that came with its wake-up: the stream leader
// republishes every stored event on the channel's wake-up subject.
type carried struct {
	seq uint64
	// prev is the newest event of the channel still stored when this one
	// was (0: none). If the reader delivered everything up to prev, no
	// event lies between what it delivered and seq.
	prev uint64
	data []byte
}

// take returns and clears what the wake-ups since the last take asked for.
func (w *waiter) take() (q []carried, fetch, urgent, due bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q, fetch, urgent, due = w.queue, w.fetch, w.urgent, w.due
	w.queue, w.spare = w.spare, nil
	w.qbytes, w.fetch, w.urgent, w.due = 0, false, false, false
	return q, fetch, urgent, due
}

// recycle hands back a queue take returned once the drain is done with
// it: the next wake-ups queue into it instead of a new slice.
func (w *waiter) recycle(q []carried) {
	if cap(q) == 0 || cap(q) > readBatch {
		return
	}
	clear(q) // drop the events' data
	w.mu.Lock()
	if w.spare == nil {
		w.spare = q[:0]
	}
	w.mu.Unlock()
}

// pending reports whether w holds wake-ups no drain has taken: events
// to deliver or a read to make.
func (w *waiter) pending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue) > 0 || w.fetch
}

// busy reports whether a drain has work left.
func (w *waiter) busy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue) > 0 || w.fetch || w.urgent || w.due
}

// set records what a drain must do next: read the stream (fetch), remove
// delivered events at once (urgent), or remove them because the purge
// delay passed (due).
func (w *waiter) set(fetch, urgent, due bool) {
	w.mu.Lock()
	w.fetch = w.fetch || fetch
	if w.fetch {
		w.queue, w.qbytes = nil, 0
	}
	w.urgent = w.urgent || urgent
	w.due = w.due || due
	w.mu.Unlock()
}

// offer records one wake-up message: a republished event is queued for
// delivery without a read; a message without one (a wake-up of an older
// writer: its sequence) asks for a read; an empty one is a writer that met
// a full buffer. The queue holds at most readBatch events and about
// readBatchBytes; beyond that the drain reads the stream instead.
func (w *waiter) offer(m *nats.Msg) {
	ev, ok := carriedOf(m, w.evSubj)
	switch {
	case !ok && len(m.Data) == 0 && m.Header == nil:
		w.set(false, true, false)
		return
	case !ok:
		w.set(true, false, false)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.fetch:
	case len(w.queue) >= readBatch || (len(w.queue) > 0 && w.qbytes+len(ev.data) > readBatchBytes):
		w.fetch, w.queue, w.qbytes = true, nil, 0
	default:
		w.queue = append(w.queue, ev)
		w.qbytes += len(ev.data)
	}
}

// carriedOf returns the event m carries when m is a republished event of
// subject evSubj with well-formed sequences.
func carriedOf(m *nats.Msg, evSubj string) (carried, bool) {
	if m.Header == nil || m.Header.Get(jetstream.SubjectHeader) != evSubj {
		return carried{}, false
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq == 0 {
		return carried{}, false
	}
	prev, err := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)
	if err != nil || prev >= seq {
		return carried{}, false
	}
	return carried{seq: seq, prev: prev, data: m.Data}, true
}

func (w *waiter) signal() {
	if x := w.notify.Load(); x != nil {
		x.kick()
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// startWakeups subscribes to the disposal announcements (and, with
// shared, to every channel's wake-ups) and starts the dispatcher. Under
// the shared subscription a quiet watch is used for quietTTL (see quiet).
func startWakeups(nc *nats.Conn, log *slog.Logger, cache *existsCache, shared bool, quietTTL time.Duration) (*wakeups, error) {
	s := &wakeups{
		nc: nc, log: log, cache: cache,
		in:       make(chan *nats.Msg, wakeQueue),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		waiters:  make(map[string]*waiter),
		quiet:    make(map[string]quietMark),
		quietTTL: quietTTL,
	}
	var err error
	if s.gone, err = nc.ChanSubscribe(subjects.MegaphoneGone(), s.in); err != nil {
		return nil, err
	}
	if shared {
		// Its own handler and pending queue, not the shared channel: it
		// carries every channel's wake-ups, and a drop on it wakes every
		// poll of the gateway to read its stream, so it may only drop past
		// a backlog of sharedPending bytes, not wakeQueue messages.
		if s.all, err = nc.Subscribe(subjects.MegaphoneWakeAll(), s.dispatch); err != nil {
			_ = s.gone.Unsubscribe()
			return nil, err
		}
		_ = s.all.SetPendingLimits(-1, sharedPending)
	}
	go s.run()
	return s, nil
}

// sharedPending bounds the backlog of the shared wake-up subscription.
const sharedPending = 64 << 20

// dispatch hands a wake-up to the poll of its channel, if one is open
// here; otherwise the channel is no longer quiet. The wake-up is queued
// under s.mu, so a poll that ends (unregister) sees every wake-up handed
// to it, and one that starts (register) every wake-up not handed to the
// poll before it.
func (s *wakeups) dispatch(m *nats.Msg) {
	s.mu.Lock()
	w := s.waiters[m.Subject]
	if w != nil {
		w.offer(m)
	} else if len(s.quiet) > 0 {
		delete(s.quiet, m.Subject)
	}
	s.mu.Unlock()
	if w != nil {
		w.signal()
	}
}

// run dispatches every wake-up and disposal to its poll until close.
func (s *wakeups) run() {
	defer close(s.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	gone := subjects.MegaphoneGone()
	for {
		select {
		case <-s.quit:
			return
		case m := <-s.in:
			if m.Subject == gone {
				s.markGone(string(m.Data))
				continue
			}
			s.dispatch(m)
		case <-tick.C:
			s.recoverDrops()
		}
	}
}

// markGone ends the poll of a disposed channel and forgets its sighting.
func (s *wakeups) markGone(id string) {
	s.cache.forget(id)
	subj, err := subjects.MegaphoneWake(id)
	if err != nil {
		return // not a channel id: no poll waits for it
	}
	s.mu.Lock()
	w := s.waiters[subj]
	s.mu.Unlock()
	if w != nil {
		w.gone.Store(true)
		w.signal()
	}
}

// recoverDrops wakes every reader whose wake-ups were dropped: under the
// shared subscription every reader, since a drop names no channel.
func (s *wakeups) recoverDrops() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.all != nil {
		n, err := s.all.Dropped()
		if err != nil || n == s.allDropped {
			return
		}
		s.allDropped = n
		for _, w := range s.waiters {
			w.set(true, false, false)
			w.signal()
		}
		return
	}
	for _, w := range s.waiters {
		if n, err := w.sub.Dropped(); err == nil && n != w.dropped {
			w.dropped = n
			w.set(true, false, false)
			w.signal()
		}
	}
}

// register subscribes to the wake-ups of channel id, whose events are
// stored on evSubj. The first drain reads the stream, unless resume is
// set and the channel stayed quiet (see quiet) for less than quietTTL:
// then quiet is true and the drains start with what the wake-ups bring.
func (s *wakeups) register(id, evSubj string, resume bool) (w *waiter, quiet bool, err error) {
	subj, err := subjects.MegaphoneWake(id)
	if err != nil {
		return nil, false, err
	}
	w = &waiter{subj: subj, evSubj: evSubj, wake: make(chan struct{}, 1), fetch: true}
	if s.all == nil {
		if w.sub, err = s.nc.ChanSubscribe(subj, s.in); err != nil {
			return nil, false, err
		}
	}
	var now quietMark
	if resume && s.all != nil {
		now = s.mark()
	}
	s.mu.Lock()
	if q, ok := s.quiet[subj]; ok {
		delete(s.quiet, subj)
		quiet = resume && s.all != nil && now.at.Sub(q.at) < s.quietTTL &&
			q.dropped == now.dropped && q.reconnects == now.reconnects
	}
	w.fetch = !quiet
	s.waiters[subj] = w
	s.mu.Unlock()
	return w, quiet, nil
}

// mark is a quiet watch beginning now.
func (s *wakeups) mark() quietMark {
	m := quietMark{at: time.Now(), reconnects: s.nc.Stats().Reconnects}
	m.dropped, _ = s.all.Dropped()
	return m
}

// unregister ends the wake-ups of w. With settled (the poll delivered
// everything it was woken for, in a drain that ended without error) and
// nothing queued on w since, the channel's quiet watch begins.
func (s *wakeups) unregister(w *waiter, settled bool) {
	var m quietMark
	if settled && s.all != nil {
		m = s.mark()
	}
	s.mu.Lock()
	if s.waiters[w.subj] == w {
		delete(s.waiters, w.subj)
		if settled && s.all != nil && !w.pending() {
			s.watchLocked(w.subj, m)
		}
	}
	if w.sub != nil {
		_ = w.sub.Unsubscribe()
	}
	s.mu.Unlock()
}

// watchQuiet begins the quiet watch of a channel nobody polls yet (one
// created here).
func (s *wakeups) watchQuiet(id string) {
	subj, err := subjects.MegaphoneWake(id)
	if err != nil || s.all == nil {
		return
	}
	m := s.mark()
	s.mu.Lock()
	if s.waiters[subj] == nil {
		s.watchLocked(subj, m)
	}
	s.mu.Unlock()
}

// watchLocked records a quiet watch. Every sweepEvery additions the
// watches older than quietTTL are dropped (a channel not polled here
// again leaves one behind), and past maxCached they start over.
func (s *wakeups) watchLocked(subj string, m quietMark) {
	putBounded(s.quiet, &s.quietAdds, subj, m, m.at, quietMarkAt, s.quietTTL)
}

func quietMarkAt(m quietMark) time.Time { return m.at }

// close stops the dispatcher.
func (s *wakeups) close() {
	_ = s.gone.Unsubscribe()
	if s.all != nil {
		_ = s.all.Unsubscribe()
	}
	close(s.quit)
	<-s.done
}
