package middleman

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/subjects"
)

// dispatchQueue is the capacity of the channel every NATS subscription of
// a hub delivers into. NATS drops (and counts) beyond it.
const dispatchQueue = 1 << 16

type routeKind int

const (
	routePub routeKind = iota
	routeSuper
	routeReq
)

// route is one NATS subscription of the hub and the local sessions it
// serves: the subscribers of a key, the super sessions, or the responders
// of a key.
type route struct {
	kind       routeKind
	key        string
	sub        *nats.Subscription
	members    map[*Session]struct{}
	responders []*Session
	next       atomic.Uint64
}

// pick returns the next responder round-robin (caller holds the hub lock).
func (r *route) pick() *Session {
	if len(r.responders) == 0 {
		return nil
	}
	return r.responders[int(r.next.Add(1)-1)%len(r.responders)]
}

// Hub routes the middleman sessions of one gateway over NATS. Every NATS
// subscription delivers into one channel drained by one dispatcher, which
// only enqueues to sessions and never blocks on a client.
type Hub struct {
	nc    *nats.Conn
	gw    string
	cfg   Config
	keys  map[string]level
	trust *Trust
	m     *metrics
	log   *slog.Logger

	msgs     chan *nats.Msg
	quit     chan struct{}
	finished chan struct{}
	ctrl     *nats.Subscription
	closing  sync.Once

	nextConn atomic.Uint64
	dropped  atomic.Int64 // by subscriptions already gone
	mu       sync.RWMutex
	sessions map[uint64]*Session
	routes   map[*nats.Subscription]*route
	pubs     map[string]*route
	reqs     map[string]*route
	super    *route
}

// NewHub subscribes the gateway's control subject and starts dispatching.
// Zero fields of cfg mean their defaults.
func NewHub(nc *nats.Conn, trust *Trust, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Hub, error) {
	cfg = cfg.withDefaults()
	h := &Hub{
		nc: nc, gw: nuid.Next(), cfg: cfg, trust: trust, m: newMetrics(reg), log: log,
		keys:     map[string]level{},
		msgs:     make(chan *nats.Msg, dispatchQueue),
		quit:     make(chan struct{}),
		finished: make(chan struct{}),
		sessions: map[uint64]*Session{},
		routes:   map[*nats.Subscription]*route{},
		pubs:     map[string]*route{},
		reqs:     map[string]*route{},
	}
	if err := h.addKeys(cfg); err != nil {
		return nil, err
	}
	subj, err := subjects.MiddlemanGatewayAll(h.gw)
	if err != nil {
		return nil, err
	}
	if h.ctrl, err = h.subscribe(subj, ""); err != nil {
		return nil, err
	}
	registerDropped(reg, h.droppedTotal)
	go h.dispatch()
	return h, nil
}

// addKeys records the handshake keys; each is at most MaxKeyLen bytes.
func (h *Hub) addKeys(cfg Config) error {
	for _, set := range []struct {
		name string
		keys []string
		lvl  level
	}{{"client", cfg.ClientKeys, levelClient}, {"service", cfg.ServiceKeys, levelService}, {"super", cfg.SuperKeys, levelSuper}} {
		for i, k := range set.keys {
			if len(k) > MaxKeyLen {
				return fmt.Errorf("%w: %s key %d is %d bytes, at most %d", ErrKeyTooLong, set.name, i+1, len(k), MaxKeyLen)
			}
			h.keys[k] = set.lvl
		}
	}
	return nil
}

// droppedTotal counts messages NATS dropped for this hub's subscriptions.
func (h *Hub) droppedTotal() float64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := h.dropped.Load() + subDropped(h.ctrl)
	for sub := range h.routes {
		n += subDropped(sub)
	}
	return float64(n)
}

func subDropped(sub *nats.Subscription) int64 {
	n, err := sub.Dropped()
	if err != nil {
		return 0
	}
	return int64(n)
}

// GatewayID is the id that prefixes every cid of this hub.
func (h *Hub) GatewayID() string { return h.gw }

// Close stops dispatching and drops every subscription. Sessions must have
// ended before.
func (h *Hub) Close() {
	h.closing.Do(func() {
		close(h.quit)
		<-h.finished
		h.mu.Lock()
		defer h.mu.Unlock()
		for sub := range h.routes {
			_ = sub.Unsubscribe()
		}
		clear(h.routes)
		_ = h.ctrl.Unsubscribe()
	})
}

func (h *Hub) subscribe(subject, queue string) (*nats.Subscription, error) {
	var sub *nats.Subscription
	var err error
	if queue == "" {
		sub, err = h.nc.ChanSubscribe(subject, h.msgs)
	} else {
		sub, err = h.nc.ChanQueueSubscribe(subject, queue, h.msgs)
	}
	if err != nil {
		return nil, fmt.Errorf("middleman: subscribe %s: %w: %v", subject, ErrInternal, err)
	}
	// Unbounded pending limits: the channel is the bound.
	_ = sub.SetPendingLimits(-1, -1)
	return sub, nil
}

// flush makes a new subscription effective on the server before the
// session's next frame is processed.
func (h *Hub) flush() {
	if err := h.nc.FlushTimeout(2 * time.Second); err != nil {
		h.log.Warn("nats flush after subscribe", "err", err)
	}
}

func (h *Hub) dispatch() {
	defer close(h.finished)
	for {
		select {
		case m := <-h.msgs:
			h.deliver(m)
		case <-h.quit:
			return
		}
	}
}

// deliver hands one NATS message to the local sessions it is for.
func (h *Hub) deliver(m *nats.Msg) {
	if m.Sub == h.ctrl {
		h.control(m)
		return
	}
	h.mu.RLock()
	r := h.routes[m.Sub]
	if r == nil {
		h.mu.RUnlock()
		return
	}
	if r.kind != routeReq {
		for s := range r.members {
			s.send(m.Data, "PUB")
		}
		h.mu.RUnlock()
		return
	}
	s := r.pick()
	h.mu.RUnlock()
	h.serveRequest(m, s)
}

func (h *Hub) session(n uint64) *Session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.sessions[n]
}

// register adds an authenticated session; from now on its cid is routable.
// A super session's wildcard subscription is effective on the server when
// register returns, so it misses no PUB after its "MM OK".
func (h *Hub) register(s *Session) error {
	created, err := h.registerLocked(s)
	if created {
		h.flush()
	}
	return err
}

func (h *Hub) registerLocked(s *Session) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions[s.n] = s
	if s.level != levelSuper {
		return false, nil
	}
	created := false
	if h.super == nil {
		sub, err := h.subscribe(subjects.MiddlemanPubAll(), "")
		if err != nil {
			delete(h.sessions, s.n)
			return false, err
		}
		h.super = &route{kind: routeSuper, sub: sub, members: map[*Session]struct{}{}}
		h.routes[sub] = h.super
		created = true
	}
	h.super.members[s] = struct{}{}
	return created, nil
}

// unregister removes a session and every subscription only it needed.
func (h *Hub) unregister(s *Session, keys, serving []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, s.n)
	if h.super != nil {
		delete(h.super.members, s)
		if len(h.super.members) == 0 {
			h.drop(h.super)
			h.super = nil
		}
	}
	for _, k := range keys {
		h.leaveLocked(s, k)
	}
	for _, k := range serving {
		h.stopServingLocked(s, k)
	}
}

// join subscribes s to PUBs of key. It reports whether a new NATS
// subscription was made (the caller then flushes).
func (h *Hub) join(s *Session, key string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.pubs[key]
	created := false
	if r == nil {
		subj, err := subjects.MiddlemanPub(key)
		if err != nil {
			return false, subjectErr(err)
		}
		sub, err := h.subscribe(subj, "")
		if err != nil {
			return false, err
		}
		r = &route{kind: routePub, key: key, sub: sub, members: map[*Session]struct{}{}}
		h.pubs[key] = r
		h.routes[sub] = r
		created = true
	}
	r.members[s] = struct{}{}
	return created, nil
}

// leave unsubscribes s from PUBs of key.
func (h *Hub) leave(s *Session, key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leaveLocked(s, key)
}

func (h *Hub) leaveLocked(s *Session, key string) {
	r := h.pubs[key]
	if r == nil {
		return
	}
	delete(r.members, s)
	if len(r.members) == 0 {
		delete(h.pubs, key)
		h.drop(r)
	}
}

// startServing registers s as a responder of key. It reports whether a new
// NATS queue subscription was made.
func (h *Hub) startServing(s *Session, key string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.reqs[key]
	created := false
	if r == nil {
		subj, err := subjects.MiddlemanReq(key)
		if err != nil {
			return false, subjectErr(err)
		}
		sub, err := h.subscribe(subj, subjects.MiddlemanQueue)
		if err != nil {
			return false, err
		}
		r = &route{kind: routeReq, key: key, sub: sub}
		h.reqs[key] = r
		h.routes[sub] = r
		created = true
	}
	r.responders = append(r.responders, s)
	return created, nil
}

func (h *Hub) stopServingLocked(s *Session, key string) {
	r := h.reqs[key]
	if r == nil {
		return
	}
	out := r.responders[:0]
	for _, x := range r.responders {
		if x != s {
			out = append(out, x)
		}
	}
	clear(r.responders[len(out):])
	r.responders = out
	if len(out) == 0 {
		delete(h.reqs, key)
		h.drop(r)
	}
}

// drop unsubscribes a route (caller holds the lock).
func (h *Hub) drop(r *route) {
	delete(h.routes, r.sub)
	h.dropped.Add(subDropped(r.sub))
	if err := r.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		h.log.Debug("unsubscribe", "subject", r.sub.Subject, "err", err)
	}
}

// publish sends data on subject, refusing what NATS could not carry.
func (h *Hub) publish(msg *nats.Msg) error {
	if int64(len(msg.Data)+512) > h.nc.MaxPayload() {
		return ErrTooLarge
	}
	if err := h.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("%w: %v", ErrInternal, err)
	}
	return nil
}

// stats are counts for tests and debugging.
type stats struct{ sessions, routes int }

func (h *Hub) stats() stats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return stats{sessions: len(h.sessions), routes: len(h.routes)}
}
