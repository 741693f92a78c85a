package megaphone

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/jsutil"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Event is one delivered event.
type Event struct {
	// Cursor is the event's position (its stream sequence); it is the SSE
	// id, and a poll opened after it skips everything up to it.
	Cursor uint64
	// Data is the event's JSON object, without a trailing newline.
	Data []byte
}

// Poll is one open read of a channel. It holds the channel's reader claim
// until [Poll.Close]. Only one Poll per channel exists in the cluster.
type Poll struct {
	b        *Broker
	a        address
	part     int // the channel's partition
	evSubj   string
	claimRev uint64
	chRev    uint64
	chData   []byte
	w        *waiter
	cursor   uint64 // last delivered sequence
	skip     uint64 // the client already has every event up to this one
	deadline time.Time

	// Removal of delivered events (see settle): everything up to purged
	// is removed; unpurged events were delivered since.
	purged     uint64
	unpurged   int
	purgeEvery int
	urgent     bool // a writer waits for room: remove at the next chance
	purgeTimer *time.Timer
	timerOn    bool

	// first is the poll's first read of the buffer, issued while the
	// channel key is refreshed (see readFirst); nil once delivered.
	first chan firstRead
	// settled: the last drain ended without error and with nothing left
	// to do, so every event the poll was woken for is delivered.
	settled bool
}

// lastRead is the outcome of a key's read from the stream leader.
type lastRead struct {
	r   record
	err error
}

// keyWrite is the outcome of a KV write.
type keyWrite struct {
	rev uint64
	err error
}

// firstRead is the outcome of a poll's first read of the buffer.
type firstRead struct {
	batch []stored
	more  bool
	err   error
}

// Open starts a poll of the channel at consumer address addr that lasts
// PollDuration from arrival and delivers events after cursor after (0 =
// from the oldest buffered). It fails with ErrBadAddress (no dot),
// ErrNotFound (unknown, expired or not a consumer address) or ErrBusy.
func (b *Broker) Open(ctx context.Context, addr string, after uint64, arrival time.Time) (*Poll, error) {
	if !strings.Contains(addr, ".") {
		return nil, fmt.Errorf("%w: %q has no agent part", ErrBadAddress, addr)
	}
	agent, id, ok := parseConsumer(addr)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a consumer address", ErrNotFound, addr)
	}
	p := &Poll{b: b, a: address{agent: agent, id: id, consumer: true}, skip: after,
		deadline: arrival.Add(b.cfg.PollDuration)}
	ch, err := b.channelKey(id)
	if err != nil {
		return nil, err
	}
	p.part = b.part(id)
	claim, err := p.claimKey()
	if err != nil {
		return nil, err
	}
	p.evSubj, _ = subjects.MegaphoneEventsIn(id, b.parts)
	p.purgeEvery = purgeThreshold(b.cfg.BufferSize)
	claimTTL := time.Until(p.deadline) + claimSlack
	holder := []byte(b.holder)
	var r record
	var early chan keyWrite // the channel key's write beside the claim's
	rv, found, fresh := b.revs.take(id)
	warm := fresh && rv.ch != 0 && matches(p.a, rv.chData)
	if warm {
		// This gateway wrote both keys last (the previous poll here, or
		// the create): claim (renew the claim it holds, or claim on its
		// release marker) and extend by compare-and-set on what it
		// wrote, both at once, with no read first. An extension that
		// finds the channel key changed is made again below, after a
		// read (it finds a deleted channel); a claim that moved on is
		// read below.
		r = record{rev: rv.ch, data: rv.chData, live: true}
		early = make(chan keyWrite, 1)
		go func() {
			rev, err := ch.put(ctx, r.data, r.rev, time.Until(p.deadline)+b.cfg.ChannelTTL)
			early <- keyWrite{rev, err}
		}()
		p.claimRev, err = claim.put(ctx, holder, rv.claim, claimTTL)
		warm = !errors.Is(err, errConflict)
	}
	if !warm {
		if early != nil {
			<-early // the key is read again below
			early = nil
		}
		// Read both keys at once: the claim key's last revision (the
		// previous poll's release marker, on any gateway, or a claim
		// held idle) is what the claim is created on.
		claimed := make(chan lastRead, 1)
		go func() {
			cr, err := claim.last(ctx)
			claimed <- lastRead{cr, err}
		}()
		r, err = ch.last(ctx)
		cr := <-claimed
		if err != nil {
			return nil, err
		}
		if !r.live || !matches(p.a, r.data) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, addr)
		}
		if cr.err != nil {
			return nil, cr.err
		}
		// A live claim is an open poll's, or held idle by the gateway
		// whose poll reached its deadline: this one (remembered in rv)
		// or another, which is asked to hand it over.
		ownHeld := found && rv.held && rv.claim == cr.r.rev
		if cr.r.live && !ownHeld && !b.askHolder(ctx, id, cr.r) {
			return nil, fmt.Errorf("%w: %s", ErrBusy, addr)
		}
		p.claimRev, err = claim.put(ctx, holder, cr.r.rev, claimTTL)
	}
	if err != nil {
		if errors.Is(err, errConflict) {
			return nil, fmt.Errorf("%w: %s", ErrBusy, addr)
		}
		return nil, err
	}
	// A warm re-poll of a channel that stayed quiet since this gateway's
	// previous poll of it ended (or since its creation here) needs no
	// first read: that poll delivered every event stored before it
	// ended, no wake-up came since, and the claim taken on the revision
	// this gateway remembers shows that no other poll ran in between.
	var quiet bool
	if p.w, quiet, err = b.wakeups.register(id, p.evSubj, warm && rv.resume); err != nil {
		p.release()
		return nil, fmt.Errorf("megaphone: subscribe: %w", err)
	}
	if quiet {
		p.cursor, p.purged, p.settled = rv.cursor, rv.cursor, true
	} else {
		p.readFirst(ctx)
	}
	if early != nil {
		if w := <-early; w.err == nil {
			p.chRev, p.chData = w.rev, r.data
		} else {
			early = nil
		}
	}
	if early == nil {
		if err := p.extend(ctx, ch, r); err != nil {
			b.wakeups.unregister(p.w, false)
			p.release()
			return nil, err
		}
	}
	b.m.openReaders.Inc()
	burstGC.opened()
	return p, nil
}

// claimKey is the channel's reader claim. A poll builds its keys again
// when it needs them instead of holding them for its whole life.
func (p *Poll) claimKey() (kvKey, error) { return p.b.claimKey(p.a.id) }

// extend keeps the channel (key ch) alive for the whole poll plus
// ChannelTTL, so it never expires under a connected reader and, should
// this gateway vanish, still dies ChannelTTL after the poll's deadline.
func (p *Poll) extend(ctx context.Context, ch kvKey, r record) error {
	ttl := time.Until(p.deadline) + p.b.cfg.ChannelTTL
	for range 3 {
		rev, err := ch.put(ctx, r.data, r.rev, ttl)
		if err == nil {
			p.chRev, p.chData = rev, r.data
			return nil
		}
		if !errors.Is(err, errConflict) {
			return err
		}
		if r, err = ch.last(ctx); err != nil {
			return err
		}
		if !r.live || !matches(p.a, r.data) {
			return fmt.Errorf("%w: %s", ErrNotFound, p.a.id)
		}
	}
	return fmt.Errorf("%w: channel %s keeps changing", ErrBusy, p.a.id)
}

// readFirst starts the poll's first read of the buffer, so that it runs
// beside the refresh of the channel key instead of after it: the claim is
// held and the wake-up subscription is registered (on the same
// connection, before the read request, so every event stored after the
// read's snapshot comes as a wake-up). The wake-ups that arrive meanwhile
// are queued for delivery instead of asking for a read of their own; the
// first drain delivers the read first, then them.
func (p *Poll) readFirst(ctx context.Context) {
	p.w.mu.Lock()
	p.w.fetch = false
	p.w.mu.Unlock()
	first := make(chan firstRead, 1)
	go func() {
		batch, more, err := p.fetch(ctx)
		first <- firstRead{batch: batch, more: more, err: err}
	}()
	p.first = first
}

// deliverFirst delivers the poll's first read. A failed read asks the
// drain for another.
func (p *Poll) deliverFirst(emit func(Event) error) error {
	r := <-p.first
	p.first = nil
	if r.err != nil {
		p.w.set(true, false, false)
		return nil
	}
	for _, ev := range r.batch {
		if ev.seq <= p.cursor {
			continue
		}
		if err := p.deliver(ev.seq, ev.data, emit); err != nil {
			return err
		}
	}
	if r.more {
		p.w.set(true, false, false)
	}
	return nil
}

// Deadline is when the poll ends.
func (p *Poll) Deadline() time.Time { return p.deadline }

// Run delivers events to emit, each once emit returned nil, removing it
// from the buffer only then. It returns nil when the deadline passes, ctx
// ends or the channel is deleted; emit's error (client gone) otherwise.
func (p *Poll) Run(ctx context.Context, emit func(Event) error) error {
	timer := time.NewTimer(time.Until(p.deadline))
	defer timer.Stop()
	for {
		if err := p.drain(ctx, emit); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if p.w.gone.Load() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			return nil
		case <-p.w.wake:
		}
	}
}

// drain delivers every event after the cursor, in order, while wake-ups
// keep bringing some. An event republished on the wake-up subject is
// delivered as it came when the reader has everything stored before it
// (its prev is at most the cursor); on a gap (a lost or reordered
// wake-up), on the first drain of a poll and after dropped wake-ups the
// stream is read instead, a batch at a time. Delivered events are removed
// by settle.
func (p *Poll) drain(ctx context.Context, emit func(Event) error) error {
	p.settled = false
	for time.Now().Before(p.deadline) {
		if p.first != nil {
			if err := p.deliverFirst(emit); err != nil {
				p.settle(false)
				return err
			}
		}
		q, fetch, urgent, due := p.w.take()
		p.urgent = p.urgent || urgent
		var err error
		if !fetch {
			fetch, err = p.deliverCarried(q, emit)
		}
		p.w.recycle(q)
		if fetch && err == nil {
			var more bool
			more, err = p.deliverStored(ctx, emit)
			if more && err == nil {
				p.w.set(true, false, false)
			}
		}
		p.settle(due)
		if err != nil || !p.w.busy() {
			p.settled = err == nil && p.first == nil
			return err
		}
	}
	return nil
}

// deliverCarried delivers the events wake-ups brought, in order. It
// stops at a gap and asks for a read.
func (p *Poll) deliverCarried(q []carried, emit func(Event) error) (gap bool, err error) {
	for _, ev := range q {
		if ev.seq <= p.cursor { // already delivered, by a read
			continue
		}
		if ev.prev > p.cursor { // an event before it is not delivered yet
			return true, nil
		}
		if err := p.deliver(ev.seq, ev.data, emit); err != nil {
			return false, err
		}
	}
	return false, nil
}

// deliverStored reads one batch of the events after the cursor and
// delivers it; more: the stream holds more.
func (p *Poll) deliverStored(ctx context.Context, emit func(Event) error) (more bool, err error) {
	batch, more, err := p.fetch(ctx)
	if err != nil {
		return false, err
	}
	for _, ev := range batch {
		if ev.seq <= p.cursor {
			continue
		}
		if err := p.deliver(ev.seq, ev.data, emit); err != nil {
			return false, err
		}
	}
	return more, nil
}

// deliver emits the event at seq unless the client already has it (SSE
// Last-Event-ID) and moves the cursor past it.
func (p *Poll) deliver(seq uint64, data []byte, emit func(Event) error) error {
	if seq > p.skip {
		if err := emit(Event{Cursor: seq, Data: data}); err != nil {
			return err
		}
		p.b.m.read.Inc()
	}
	p.cursor = seq
	p.unpurged++
	return nil
}

// Delivered events are removed lazily, with one subject purge for many
// of them: when purgeThreshold of them are waiting (half the buffer, at
// most 50: a purge costs a JetStream API request whatever it removes),
// purgeDelay after the first of them was delivered, at once when a writer met a full buffer
// (it says so on the wake-up subject), and when the poll ends, before the
// reader claim is released — so the next poll, on any gateway, never
// gets them again. Writers waiting for room are told after each purge.
var (
	purgeEvery = 50
	// purgeShare: delivered events waiting for removal hold at most this
	// share of the buffer (1/purgeShare), so writers rarely meet a buffer
	// full of them; 0 = no bound but purgeEvery.
	purgeShare = 2
	purgeDelay = time.Second
)

// purgeThreshold is how many delivered events a poll of a channel with
// bufferSize removes at once.
func purgeThreshold(bufferSize int) int {
	if purgeShare > 0 {
		return max(1, min(purgeEvery, bufferSize/purgeShare))
	}
	return max(1, purgeEvery)
}

// settle removes the delivered events when that is due (see purgeEvery)
// or arms the purge delay.
func (p *Poll) settle(due bool) {
	if p.cursor <= p.purged {
		return
	}
	if !p.urgent && !due && p.unpurged < p.purgeEvery {
		if !p.timerOn {
			p.timerOn = true
			if p.purgeTimer == nil {
				p.purgeTimer = time.AfterFunc(purgeDelay, p.purgeDue)
			} else {
				p.purgeTimer.Reset(purgeDelay)
			}
		}
		return
	}
	p.purge()
}

// purgeDue asks the poll's delivery to remove what it delivered.
func (p *Poll) purgeDue() {
	p.w.set(false, false, true)
	p.w.signal()
}

// purge removes every delivered event and tells writers waiting for room.
func (p *Poll) purge() {
	if p.timerOn {
		p.purgeTimer.Stop()
		p.timerOn = false
	}
	p.remove(p.cursor)
	p.purged, p.unpurged, p.urgent = p.cursor, 0, false
	if room, err := subjects.MegaphoneRoom(p.a.id); err == nil {
		_ = p.b.nc.Publish(room, nil)
	}
}

// fetch reads the events after the cursor, oldest first, up to readBatch
// events and about readBatchBytes, and says whether more are buffered.
// With one replica it is one batch direct get; otherwise it reads event
// by event through the stream leader, which knows every acknowledged
// event.
func (p *Poll) fetch(ctx context.Context) ([]stored, bool, error) {
	if p.b.batch != nil {
		return p.b.batch.read(ctx, subjects.MegaphoneDirectGetOf(p.part, p.b.parts), p.evSubj, p.cursor+1)
	}
	var out []stored
	next, size := p.cursor+1, 0
	for len(out) < readBatch && size < readBatchBytes {
		m, err := p.b.events[p.part].GetMsg(ctx, next, jetstream.WithGetMsgSubject(p.evSubj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, false, nil
		}
		if err != nil {
			if len(out) > 0 { // deliver what was read; the next drain retries
				return out, false, nil
			}
			return nil, false, fmt.Errorf("megaphone: read event: %w", err)
		}
		out = append(out, stored{seq: m.Sequence, data: m.Data})
		next, size = m.Sequence+1, size+len(m.Data)
	}
	return out, true, nil
}

// remove deletes every event of the channel up to and including seq, all
// delivered. It is not cut short by the end of the poll: an event the
// client has must not be delivered again.
func (p *Poll) remove(seq uint64) {
	// {"filter":"<event subject>","seq":<seq+1>}: purge the subject below
	// seq+1. The subject is ASCII letters, digits and dots.
	req := make([]byte, 0, len(p.evSubj)+40)
	req = strconv.AppendQuote(append(req, `{"filter":`...), p.evSubj)
	req = append(strconv.AppendUint(append(req, `,"seq":`...), seq+1, 10), '}')
	msg, err := p.b.acks.request(p.b.purgeAPIs[p.part], req, readTimeout)
	if err == nil {
		err = jsutil.Success(msg.Data)
	}
	if err != nil {
		p.b.log.Warn("remove delivered events", "channel", p.a.id, "through", seq, "err", err)
	}
}

// Close ends the poll: it counts as the channel's last completed read
// (the channel now lives ChannelTTL) and frees the reader claim, or holds
// it idle for the next poll (see hold.go), once the delivered events are
// removed, so the next poll, on any gateway, finds the buffer without
// them. A poll that reached its deadline leaves the
// channel key as it is: its start already gave it a TTL of the deadline
// plus ChannelTTL. One that ended early (client gone, shutdown) refreshes
// it to ChannelTTL from now, beside the removal and the release. A poll
// that ended settled leaves its cursor to the next poll here (see
// wakeups.quiet).
func (p *Poll) Close() {
	settled := p.settled // only ever set with the first read delivered
	p.b.wakeups.unregister(p.w, settled)
	p.b.m.openReaders.Dec()
	var refreshed chan uint64
	if time.Now().Before(p.deadline) {
		refreshed = make(chan uint64, 1)
		go func() { refreshed <- p.refresh() }()
	}
	if p.cursor > p.purged {
		p.purge()
	} else if p.timerOn {
		p.purgeTimer.Stop()
	}
	// A poll that reached its deadline holds its claim for the channel's
	// next poll (see hold.go); one that ended early releases it.
	claimRev, held := p.claimRev, refreshed == nil && !p.b.closing.Load()
	if !held {
		claimRev = p.release()
	}
	chRev := p.chRev
	if refreshed != nil {
		chRev = <-refreshed
	}
	if chRev != 0 || held {
		p.b.revs.put(p.a.id, keyRevs{ch: chRev, chData: p.chData, claim: claimRev, held: held,
			cursor: p.cursor, resume: settled})
	}
}

// refresh sets the channel key's TTL to ChannelTTL and returns its new
// revision (0: not refreshed).
func (p *Poll) refresh() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch, err := p.b.channelKey(p.a.id)
	var rev uint64
	if err == nil {
		rev, err = ch.put(ctx, p.chData, p.chRev, p.b.cfg.ChannelTTL)
	}
	if err != nil && !errors.Is(err, errConflict) {
		p.b.log.Warn("refresh channel after read", "channel", p.a.id, "err", err)
	}
	return rev
}

// release frees the reader claim if it is still this poll's and returns
// the revision of its release marker (0: not released).
func (p *Poll) release() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	claim, err := p.claimKey()
	var rev uint64
	if err == nil {
		rev, err = claim.remove(ctx, p.claimRev, claimSlack)
	}
	if err != nil && !errors.Is(err, errConflict) &&
		!errors.Is(err, nats.ErrConnectionClosed) {
		p.b.log.Warn("release reader claim", "channel", p.a.id, "err", err)
	}
	return rev
}
