package megaphone

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// hubQueue is the capacity of the channel every wake-up subscription
// shares. A full queue drops wake-ups; the dispatcher then notices the
// subscription's drop count and wakes its reader anyway.
const hubQueue = 8192

// hub routes wake-ups to open polls. Every poll's subscription feeds one
// shared Go channel (ChanSubscribe spawns no goroutine), so an open reader
// costs a subscription and a map entry, not a goroutine.
type hub struct {
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
}

func (w *waiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func startHub(nc *nats.Conn, log *slog.Logger, cache *existsCache) (*hub, error) {
	h := &hub{
		nc: nc, log: log, cache: cache,
		in:      make(chan *nats.Msg, hubQueue),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		waiters: make(map[string]*waiter),
		byID:    make(map[string]*waiter),
	}
	var err error
	if h.gone, err = nc.ChanSubscribe(subjects.MegaphoneGone(), h.in); err != nil {
		return nil, err
	}
	go h.run()
	return h, nil
}

func (h *hub) run() {
	defer close(h.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	gone := subjects.MegaphoneGone()
	for {
		select {
		case <-h.quit:
			return
		case m := <-h.in:
			if m.Subject == gone {
				h.markGone(string(m.Data))
				continue
			}
			h.mu.Lock()
			w := h.waiters[m.Subject]
			h.mu.Unlock()
			if w != nil {
				w.signal()
			}
		case <-tick.C:
			h.recoverDrops()
		}
	}
}

// markGone ends the poll of a disposed channel and forgets its sighting.
func (h *hub) markGone(id string) {
	h.cache.forget(id)
	h.mu.Lock()
	w := h.byID[id]
	h.mu.Unlock()
	if w != nil {
		w.gone.Store(true)
		w.signal()
	}
}

// recoverDrops wakes every reader whose wake-ups were dropped.
func (h *hub) recoverDrops() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.waiters {
		if n, err := w.sub.Dropped(); err == nil && n != w.dropped {
			w.dropped = n
			w.signal()
		}
	}
}

// register subscribes to the wake-ups of channel id.
func (h *hub) register(id string) (*waiter, error) {
	subj, err := subjects.MegaphoneWake(id)
	if err != nil {
		return nil, err
	}
	w := &waiter{id: id, wake: make(chan struct{}, 1)}
	sub, err := h.nc.ChanSubscribe(subj, h.in)
	if err != nil {
		return nil, err
	}
	w.sub = sub
	h.mu.Lock()
	h.waiters[subj] = w
	h.byID[id] = w
	h.mu.Unlock()
	return w, nil
}

func (h *hub) unregister(w *waiter) {
	h.mu.Lock()
	delete(h.waiters, w.sub.Subject)
	_ = w.sub.Unsubscribe()
	if h.byID[w.id] == w {
		delete(h.byID, w.id)
	}
	h.mu.Unlock()
}

func (h *hub) close() {
	_ = h.gone.Unsubscribe()
	close(h.quit)
	<-h.done
}
