package megaphone

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// wakeQueue is the capacity of the channel every wake-up subscription
// shares. A full queue drops wake-ups; the dispatcher then notices the
// subscription's drop count and wakes its reader anyway.
const wakeQueue = 8192

// wakeups routes wake-ups to open polls. Every poll's subscription feeds
// one shared Go channel (ChanSubscribe spawns no goroutine), so an open
// reader costs a subscription and a map entry, not a goroutine.
type wakeups struct {
	nc    *nats.Conn
	log   *slog.Logger
	cache *existsCache
	in    chan *nats.Msg
	gone  *nats.Subscription
	quit  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	waiters map[string]*waiter // by wake subject
	byID    map[string]*waiter
}

// waiter is one open poll's wake-up signal.
type waiter struct {
	id      string
	wake    chan struct{}
	gone    atomic.Bool
	sub     *nats.Subscription
	dropped int
	// notify, when set, is called instead of signalling wake: a parked
	// poll has no goroutine waiting on the channel. It must not block.
	notify atomic.Pointer[func()]
}

func (w *waiter) signal() {
	if f := w.notify.Load(); f != nil {
		(*f)()
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// startWakeups subscribes to the disposal announcements and starts the
// dispatcher.
func startWakeups(nc *nats.Conn, log *slog.Logger, cache *existsCache) (*wakeups, error) {
	s := &wakeups{
		nc: nc, log: log, cache: cache,
		in:      make(chan *nats.Msg, wakeQueue),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		waiters: make(map[string]*waiter),
		byID:    make(map[string]*waiter),
	}
	var err error
	if s.gone, err = nc.ChanSubscribe(subjects.MegaphoneGone(), s.in); err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
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
			s.mu.Lock()
			w := s.waiters[m.Subject]
			s.mu.Unlock()
			if w != nil {
				w.signal()
			}
		case <-tick.C:
			s.recoverDrops()
		}
	}
}

// markGone ends the poll of a disposed channel and forgets its sighting.
func (s *wakeups) markGone(id string) {
	s.cache.forget(id)
	s.mu.Lock()
	w := s.byID[id]
	s.mu.Unlock()
	if w != nil {
		w.gone.Store(true)
		w.signal()
	}
}

// recoverDrops wakes every reader whose wake-ups were dropped.
func (s *wakeups) recoverDrops() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.waiters {
		if n, err := w.sub.Dropped(); err == nil && n != w.dropped {
			w.dropped = n
			w.signal()
		}
	}
}

// register subscribes to the wake-ups of channel id.
func (s *wakeups) register(id string) (*waiter, error) {
	subj, err := subjects.MegaphoneWake(id)
	if err != nil {
		return nil, err
	}
	w := &waiter{id: id, wake: make(chan struct{}, 1)}
	sub, err := s.nc.ChanSubscribe(subj, s.in)
	if err != nil {
		return nil, err
	}
	w.sub = sub
	s.mu.Lock()
	s.waiters[subj] = w
	s.byID[id] = w
	s.mu.Unlock()
	return w, nil
}

// unregister ends the wake-ups of w.
func (s *wakeups) unregister(w *waiter) {
	s.mu.Lock()
	delete(s.waiters, w.sub.Subject)
	_ = w.sub.Unsubscribe()
	if s.byID[w.id] == w {
		delete(s.byID, w.id)
	}
	s.mu.Unlock()
}

// close stops the dispatcher.
func (s *wakeups) close() {
	_ = s.gone.Unsubscribe()
	close(s.quit)
	<-s.done
}
