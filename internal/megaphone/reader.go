package megaphone

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	room     string
	claim    kvKey
	claimRev uint64
	ch       kvKey
	chRev    uint64
	chData   []byte
	w        *waiter
	cursor   uint64 // last delivered sequence
	skip     uint64 // the client already has every event up to this one
	deadline time.Time
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
	var err error
	if p.ch, err = b.channelKey(id); err != nil {
		return nil, err
	}
	p.part = b.part(id)
	if p.claim, err = newKVKey(b.nc, b.js, subjects.MegaphoneReadersBucketOf(p.part, b.parts), id); err != nil {
		return nil, err
	}
	p.evSubj, _ = subjects.MegaphoneEventsIn(id, b.parts)
	p.room, _ = subjects.MegaphoneRoom(id)
	r, err := p.ch.last(ctx)
	if err != nil {
		return nil, err
	}
	if !r.live || !matches(p.a, r.data) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, addr)
	}
	claimTTL := time.Until(p.deadline) + claimSlack
	if p.claimRev, err = p.claim.create(ctx, []byte(b.nc.ConnectedServerId()), claimTTL); err != nil {
		if errors.Is(err, errConflict) {
			return nil, fmt.Errorf("%w: %s", ErrBusy, addr)
		}
		return nil, err
	}
	if err := p.extend(ctx, r); err != nil {
		p.release()
		return nil, err
	}
	if p.w, err = b.wakeups.register(id); err != nil {
		p.release()
		return nil, fmt.Errorf("megaphone: subscribe: %w", err)
	}
	b.m.openReaders.Inc()
	return p, nil
}

// extend keeps the channel alive for the whole poll plus ChannelTTL, so
// it never expires under a connected reader and, should this gateway
// vanish, still dies ChannelTTL after the poll's deadline.
func (p *Poll) extend(ctx context.Context, r record) error {
	ttl := time.Until(p.deadline) + p.b.cfg.ChannelTTL
	for range 3 {
		rev, err := p.ch.put(ctx, r.data, r.rev, ttl)
		if err == nil {
			p.chRev, p.chData = rev, r.data
			return nil
		}
		if !errors.Is(err, errConflict) {
			return err
		}
		if r, err = p.ch.last(ctx); err != nil {
			return err
		}
		if !r.live {
			return fmt.Errorf("%w: %s", ErrNotFound, p.a.id)
		}
	}
	return fmt.Errorf("%w: channel %s keeps changing", ErrBusy, p.a.id)
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

// drain delivers every buffered event after the cursor, a batch at a
// time: it reads a batch, delivers its events one by one, then removes
// what it delivered with one purge and tells writers waiting for room.
func (p *Poll) drain(ctx context.Context, emit func(Event) error) error {
	for time.Now().Before(p.deadline) {
		batch, more, err := p.fetch(ctx)
		if err != nil {
			return err
		}
		var done uint64 // the newest event delivered (or skipped) so far
		for _, ev := range batch {
			if ev.seq > p.skip { // else delivered before, by the client's Last-Event-ID
				if err = emit(Event{Cursor: ev.seq, Data: ev.data}); err != nil {
					break
				}
				p.b.m.read.Inc()
			}
			done = ev.seq
		}
		if done > 0 {
			p.cursor = done
			p.remove(ctx, done)
			_ = p.b.nc.Publish(p.room, nil)
		}
		if err != nil || !more {
			return err
		}
	}
	return nil
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
func (p *Poll) remove(ctx context.Context, seq uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
	defer cancel()
	if err := p.b.events[p.part].Purge(ctx, jetstream.WithPurgeSubject(p.evSubj), jetstream.WithPurgeSequence(seq+1)); err != nil {
		p.b.log.Warn("remove delivered events", "channel", p.a.id, "through", seq, "err", err)
	}
}

// Close ends the poll: it counts as the channel's last completed read
// (the channel now lives ChannelTTL) and frees the reader claim.
func (p *Poll) Close() {
	p.b.wakeups.unregister(p.w)
	p.b.m.openReaders.Dec()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.ch.put(ctx, p.chData, p.chRev, p.b.cfg.ChannelTTL); err != nil && !errors.Is(err, errConflict) {
		p.b.log.Warn("refresh channel after read", "channel", p.a.id, "err", err)
	}
	p.release()
}

// release frees the reader claim if it is still this poll's.
func (p *Poll) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.claim.remove(ctx, p.claimRev, claimSlack); err != nil && !errors.Is(err, errConflict) &&
		!errors.Is(err, nats.ErrConnectionClosed) {
		p.b.log.Warn("release reader claim", "channel", p.a.id, "err", err)
	}
}
