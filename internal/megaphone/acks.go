package megaphone

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ackSlots carry the answers of event publishes, of the purges of
// delivered events and of the polls' KV writes (claim, release, channel
// refresh; see kvKey.publish): JetStream requests of the event and poll
// paths. A slot is a
// reply subscription of its own, reused by one publish after another:
// the acknowledgement goes from nats.go's read loop straight into the
// slot's channel, where the writer waits. nats.go's request (one shared
// reply subscription) routes it through the subscription's own goroutine
// and a map, and makes a reply subject, a channel and a map entry per
// request.
//
// A slot goes back to the free list only after its one reply came; a
// publish that timed out or failed gives its slot up (unsubscribes), so a
// late reply can never be taken for a later publish's. At most
// maxAckSlots slots exist at once (one per write in flight), and every
// slot that comes back is kept for reuse, so their subscriptions are made
// once, not per write; past that a publish is a plain nats.go request.
type ackSlots struct {
	nc *nats.Conn

	mu     sync.Mutex
	free   []*ackSlot
	inUse  int
	closed bool
}

// ackSlot is one reusable reply subscription.
type ackSlot struct {
	inbox string
	sub   *nats.Subscription
	// ch holds the reply; one reply per publish, so it never fills (a
	// message nats.go cannot put in it is dropped as a slow consumer's).
	ch    chan *nats.Msg
	timer *time.Timer
}

const (
	// maxAckSlots bounds the slots (subscriptions) in use at once.
	maxAckSlots = 256
	// maxFreeAckSlots bounds the idle slots kept for reuse: all of them,
	// since a slot made and given up per write would cost a subscription
	// and an unsubscription on the server (and across a cluster) each.
	maxFreeAckSlots = maxAckSlots
)

func newAckSlots(nc *nats.Conn) *ackSlots { return &ackSlots{nc: nc} }

// get returns a free slot or a new one; nil when maxAckSlots are in use
// or after close.
func (s *ackSlots) get() (*ackSlot, error) {
	s.mu.Lock()
	if s.closed || s.inUse >= maxAckSlots {
		s.mu.Unlock()
		return nil, nil
	}
	s.inUse++
	if n := len(s.free); n > 0 {
		sl := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		s.mu.Unlock()
		return sl, nil
	}
	s.mu.Unlock()
	sl := &ackSlot{inbox: s.nc.NewInbox(), ch: make(chan *nats.Msg, 1)}
	sub, err := s.nc.ChanSubscribe(sl.inbox, sl.ch)
	if err != nil {
		s.mu.Lock()
		s.inUse--
		s.mu.Unlock()
		return nil, err
	}
	sl.sub = sub
	sl.timer = time.NewTimer(time.Hour)
	sl.timer.Stop()
	return sl, nil
}

// put returns a slot whose reply came (reuse), or gives up one whose
// reply may still come (drop).
func (s *ackSlots) put(sl *ackSlot, reuse bool) {
	s.mu.Lock()
	s.inUse--
	if reuse && !s.closed && len(s.free) < maxFreeAckSlots {
		s.free = append(s.free, sl)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	_ = sl.sub.Unsubscribe()
}

// request publishes data on subj and returns the one reply, as
// nats.Conn.Request does (nats.ErrNoResponders when nothing listens on
// subj, nats.ErrTimeout after timeout).
func (s *ackSlots) request(subj string, data []byte, timeout time.Duration) (*nats.Msg, error) {
	sl, err := s.get()
	if err != nil {
		return nil, err
	}
	if sl == nil {
		return s.nc.Request(subj, data, timeout)
	}
	if err := s.nc.PublishRequest(subj, sl.inbox, data); err != nil {
		s.put(sl, false)
		return nil, err
	}
	sl.timer.Reset(timeout)
	select {
	case m := <-sl.ch:
		sl.timer.Stop() // no value can be received after Stop (Go >= 1.23)
		return s.reply(sl, m)
	case <-sl.timer.C:
		s.put(sl, false)
		return nil, nats.ErrTimeout
	}
}

// reply returns the slot whose reply m came and m, or
// nats.ErrNoResponders for the server's no-responders status.
func (s *ackSlots) reply(sl *ackSlot, m *nats.Msg) (*nats.Msg, error) {
	s.put(sl, true)
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return nil, nats.ErrNoResponders
	}
	return m, nil
}

// requestMsg publishes m (its subject, headers and data) and returns the
// one reply, as nats.Conn.RequestMsgWithContext does, waiting until ctx
// ends (its error is returned then) or, for a ctx without a deadline, at
// most publishTimeout (then context.DeadlineExceeded, as the jetstream
// package's publish gives).
func (s *ackSlots) requestMsg(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	_, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, publishTimeout)
		defer cancel()
	}
	sl, err := s.get()
	if err != nil {
		return nil, err
	}
	if sl == nil {
		return s.nc.RequestMsgWithContext(ctx, m)
	}
	if err := s.nc.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: sl.inbox, Header: m.Header, Data: m.Data}); err != nil {
		s.put(sl, false)
		return nil, err
	}
	select {
	case r := <-sl.ch:
		return s.reply(sl, r)
	case <-ctx.Done():
		s.put(sl, false)
		return nil, ctx.Err()
	}
}

// close gives up the idle slots; slots in use are given up when they come
// back.
func (s *ackSlots) close() {
	s.mu.Lock()
	s.closed = true
	free := s.free
	s.free = nil
	s.mu.Unlock()
	for _, sl := range free {
		_ = sl.sub.Unsubscribe()
	}
}
