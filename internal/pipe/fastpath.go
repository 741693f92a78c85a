package pipe

import (
	"context"

	"github.com/switchboard/switchboard/internal/subjects"
)

// The common hand-off (a fresh or idle channel, one producer and one
// consumer) takes few queue operations because of three facts kept here:
//
//   - An entry appended to an empty channel (compare-and-set on "no
//     entry") carries hdrAlone. While it is the channel's newest entry it is
//     also its only one: nothing can be inserted before it, so it is the
//     channel's head for as long as it exists. Its partner, arriving on
//     this gateway or another, claims it at once without the marker (see
//     claimAlone) and deletes it by position.
//   - This gateway remembers, per channel, the local party that appended
//     the newest entry it knows of (tail). An arrival uses it as its guess
//     of the channel's newest entry, or "empty" when there is none, instead
//     of reading the queue. Every append taken on a guess is a
//     compare-and-set against it, so a wrong guess costs one refused
//     append and the usual read follows; FIFO rests on the same
//     compare-and-set as before. The one step that is not an append, the
//     claim of an alone entry, needs no compare-and-set: the entry is the
//     head while it exists, its offer admits one claim, and a stale guess
//     (the entry already served) is refused like a party that left.
//
// Order among parties that do not wait. Waiting parties are ordered by
// their entries' stream sequence, and the head is always served first.
// Two parties arriving for the same head at once (one claiming an alone
// entry directly, one holding the marker) are ordered by the moment their
// claim reaches the head's offer: a party holding the marker has not
// joined the queue, so a direct claim that gets there first is served
// first, and the marker holder goes on to the next head or waits. Across
// gateways, arrivals less than a round trip apart have no other order to
// keep; p1..p4 waiting, then c1, always gives c1 p1 (TestFIFOStaleGuess,
// TestFIFOTwoGateways).
//   - Arrivals of one channel on this gateway go through arrive one at a
//     time (gate), so a consumer and a producer that reach the same gateway
//     together meet on the fast path instead of racing for the empty
//     channel.

// hdrAlone marks a queue entry appended to an empty channel.
const hdrAlone = "Sb-Pipe-Alone"

// arrivalGate lets one arrival of a channel at a time run arrive on this
// gateway.
type arrivalGate struct {
	slot chan struct{}
	refs int
	tail *waiter // the local party with the channel's newest known entry
}

// enterChannel waits for channel's gate and returns the func that leaves
// it.
func (h *Hub) enterChannel(ctx context.Context, channel string) (func(), error) {
	h.gateMu.Lock()
	g := h.gates[channel]
	if g == nil {
		g = &arrivalGate{slot: make(chan struct{}, 1)}
		h.gates[channel] = g
	}
	g.refs++
	h.gateMu.Unlock()
	drop := func() {
		h.gateMu.Lock()
		g.refs--
		if g.refs == 0 && g.tail == nil && h.gates[channel] == g {
			delete(h.gates, channel)
		}
		h.gateMu.Unlock()
	}
	select {
	case g.slot <- struct{}{}:
		return func() { <-g.slot; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}

// setTail records that w appended the newest entry of its channel.
func (h *Hub) setTail(w *waiter) {
	h.gateMu.Lock()
	defer h.gateMu.Unlock()
	if g := h.gates[w.chFilter]; g != nil {
		g.tail = w
	}
}

// dropTail forgets w as its channel's tail (w leaves this gateway).
func (h *Hub) dropTail(w *waiter) {
	h.gateMu.Lock()
	defer h.gateMu.Unlock()
	g := h.gates[w.chFilter]
	if g == nil || g.tail != w {
		return
	}
	g.tail = nil
	if g.refs == 0 {
		delete(h.gates, w.chFilter)
	}
}

// guessLast is this gateway's guess of channel's newest entry: the tail's
// entry while the tail waits in the queue, else none.
func (h *Hub) guessLast(channel string) *entry {
	h.gateMu.Lock()
	var t *waiter
	if g := h.gates[channel]; g != nil {
		t = g.tail
	}
	h.gateMu.Unlock()
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != stateWaiting || t.seq == 0 {
		return nil
	}
	return &entry{
		seq:   t.seq,
		info:  subjects.PipeEntryInfo{Namespace: t.ch.Namespace, Name: t.ch.Name, Role: t.role, Gateway: h.id},
		id:    t.id,
		alone: t.alone,
	}
}
