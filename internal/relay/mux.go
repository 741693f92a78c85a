package relay

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// muxIdle is how long an unused reply subscription of an upstream is kept
// for the next request; maxIdleMuxes bounds how many are kept (upstream
// names are user input).
const (
	muxIdle      = 10 * time.Second
	maxIdleMuxes = 256
)

// mux is one wildcard subscription per upstream that carries the replies
// of all the client's exchanges with it, so a request costs no SUB/UNSUB
// (which a cluster would propagate to every server).
//
// Reply tokens are reused (see muxes.release): a handful of reply subjects
// serve all the exchanges, so the NATS server's subject caches hit for
// the agents' answers, where a fresh subject per exchange missed them
// every time. What tells a reused subject's exchanges apart is the
// attempt value (hdrTry), which no two attempts share, and the agent's
// control subject.
type mux struct {
	space string // subjects.RelayExchangeSpace(<RelayInbox(upstream)>, <client id>)
	sub   *nats.Subscription
	calls map[string]chan *nats.Msg
	free  []string // released tokens, reused last in, first out
	idle  *time.Timer
}

// maxFreeTokens bounds the released tokens a mux keeps for reuse.
const maxFreeTokens = 1024

// muxes is a Client's set of reply subscriptions.
type muxes struct {
	nc     *nats.Conn
	id     string
	mu     sync.Mutex
	by     map[string]*mux
	next   uint64
	closed bool
}

func newMuxes(nc *nats.Conn) *muxes {
	return &muxes{nc: nc, id: strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix), by: map[string]*mux{}}
}

// register returns a reply subject for upstream, whose inbox prefix
// (subjects.RelayInbox) is prefix, no exchange in flight has, whose
// messages go to ch, and the function that releases it: with reuse, a
// later exchange may get the same subject.
func (ms *muxes) register(upstream, prefix string, ch chan *nats.Msg) (string, func(reuse bool), error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.closed {
		return "", nil, protocol.ErrShuttingDown
	}
	m := ms.by[upstream]
	if m == nil {
		m = &mux{space: subjects.RelayExchangeSpace(prefix, ms.id), calls: map[string]chan *nats.Msg{}}
		var err error
		if m.sub, err = ms.nc.Subscribe(subjects.RelayExchangeAll(m.space), m.dispatch(&ms.mu)); err != nil {
			return "", nil, err
		}
		_ = m.sub.SetPendingLimits(-1, 64<<20)
		ms.by[upstream] = m
	}
	if m.idle != nil {
		m.idle.Stop()
	}
	var tok string
	if n := len(m.free); n > 0 {
		tok = m.free[n-1]
		m.free = m.free[:n-1]
	} else {
		ms.next++
		tok = strconv.FormatUint(ms.next, 36)
	}
	m.calls[tok] = ch
	return subjects.RelayExchange(m.space, tok), func(reuse bool) { ms.release(upstream, m, tok, reuse) }, nil
}

// dispatch hands a message to its exchange; a full channel drops it (the
// exchange reads its few messages promptly).
func (m *mux) dispatch(mu *sync.Mutex) nats.MsgHandler {
	return func(msg *nats.Msg) {
		tok := msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:]
		mu.Lock()
		ch := m.calls[tok]
		mu.Unlock()
		if ch != nil {
			select {
			case ch <- msg:
			default:
			}
		}
	}
}

// release ends the delivery to tok's exchange. With reuse, tok may serve
// a later exchange (see call.stopReplies for when it may).
func (ms *muxes) release(upstream string, m *mux, tok string, reuse bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(m.calls, tok)
	if reuse && len(m.free) < maxFreeTokens {
		m.free = append(m.free, tok)
	}
	if len(m.calls) > 0 || ms.by[upstream] != m {
		return
	}
	if ms.closed || len(ms.by) > maxIdleMuxes {
		ms.drop(upstream, m)
		return
	}
	if m.idle != nil {
		// One timer per mux, re-armed: a mux of sequential requests
		// goes idle after every one of them.
		m.idle.Reset(muxIdle)
		return
	}
	m.idle = time.AfterFunc(muxIdle, func() {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		if len(m.calls) == 0 && ms.by[upstream] == m {
			ms.drop(upstream, m)
		}
	})
}

// drop unsubscribes an idle mux. ms.mu must be held.
func (ms *muxes) drop(upstream string, m *mux) {
	delete(ms.by, upstream)
	if m.idle != nil {
		m.idle.Stop()
	}
	_ = m.sub.Unsubscribe()
}

// close unsubscribes every idle mux and refuses new ones; busy ones go
// when their last exchange ends.
func (ms *muxes) close() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.closed = true
	for up, m := range ms.by {
		if len(m.calls) == 0 {
			ms.drop(up, m)
		}
	}
}
