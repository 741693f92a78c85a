package pipe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// patchbay's pub/sub mode.
//
// A pub/sub producer (POST ?pubsub=true) never waits. Its body goes to
// every consumer waiting on the channel when it arrives, at most
// pipe.max_receivers, and it answers 200 at once when there is none (the
// body is dropped). Two kinds of consumers are reached:
//
//   - ordinary consumers waiting in the channel's queue: under the
//     channel's marker the producer claims every consumer head, whatever
//     their n (see fanout.go), as a group producer would;
//   - pub/sub consumers (GET ?pubsub=true): they never enter the queue, so
//     ordinary producers never meet them. A gateway holding some
//     subscribes to sb.pipe.pub.<ns>.<name> and answers a pub/sub
//     producer's request there with their ids; the producer then claims
//     each of them like a queue entry. With no gateway subscribed the
//     request ends at once (no responders); otherwise answers are
//     gathered until none came for pubStall.
//
// The transfer is the fan-out of fanout.go: the producer's 200 comes once
// every receiver that stayed read the whole body.

// pubStall is how long a pub/sub producer waits for one more gateway's
// answer after the last one.
const pubStall = 20 * time.Millisecond

// Answer headers of sb.pipe.pub.<ns>.<name>.
const (
	hdrGateway = "Sb-Pipe-Gateway"
	hdrID      = "Sb-Pipe-Id"
)

// maxIDLen bounds a party id in an answer (ids are base-36 counters).
const maxIDLen = 16

// pubRegistry is the pub/sub consumers held by this gateway, by channel,
// and the subscription each channel with one has.
type pubRegistry struct {
	mu    sync.Mutex
	chans map[Channel]*pubChannel
}

type pubChannel struct {
	sub *nats.Subscription
	ids []string // in arrival order
}

// pubJoin adds the waiting pub/sub consumer id on ch, subscribing to the
// channel's pub/sub subject if it is the first here.
func (h *Hub) pubJoin(ctx context.Context, ch Channel, id string) error {
	subj, err := subjects.PipePub(ch.Namespace, ch.Name)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadName, err)
	}
	r := &h.pub
	r.mu.Lock()
	if r.chans == nil {
		r.chans = map[Channel]*pubChannel{}
	}
	pc := r.chans[ch]
	if pc == nil {
		sub, err := h.nc.Subscribe(subj, h.onPub)
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("%w: subscribe: %v", ErrUnavailable, err)
		}
		pc = &pubChannel{sub: sub}
		r.chans[ch] = pc
	}
	pc.ids = append(pc.ids, id)
	r.mu.Unlock()
	// The server knows the subscription once the flush returns: a
	// producer arriving after this consumer reaches it.
	fctx, cancel := context.WithTimeout(ctx, h.cfg.ClaimTimeout)
	defer cancel()
	if err := h.nc.FlushWithContext(fctx); err != nil {
		h.pubLeave(ch, id)
		return fmt.Errorf("%w: flush: %v", ErrUnavailable, err)
	}
	return nil
}

// pubLeave removes id from ch, unsubscribing after the last one.
func (h *Hub) pubLeave(ch Channel, id string) {
	r := &h.pub
	r.mu.Lock()
	defer r.mu.Unlock()
	pc := r.chans[ch]
	if pc == nil {
		return
	}
	for i, v := range pc.ids {
		if v == id {
			pc.ids = append(pc.ids[:i], pc.ids[i+1:]...)
			break
		}
	}
	if len(pc.ids) == 0 {
		_ = pc.sub.Unsubscribe()
		delete(r.chans, ch)
	}
}

// onPub answers a pub/sub producer with the ids of this gateway's pub/sub
// consumers on the channel.
func (h *Hub) onPub(m *nats.Msg) {
	if m.Reply == "" || h.checkPeer(m.Reply) != nil {
		return
	}
	ns, name, err := subjects.ParsePipePub(m.Subject)
	if err != nil {
		return
	}
	reply := nats.NewMsg(m.Reply)
	reply.Header.Set(hdrGateway, h.id)
	h.pub.mu.Lock()
	if pc := h.pub.chans[Channel{Namespace: ns, Name: name}]; pc != nil {
		for i, id := range pc.ids {
			if i == h.cfg.MaxReceivers {
				break
			}
			reply.Header.Add(hdrID, id)
		}
	}
	h.pub.mu.Unlock()
	_ = h.nc.PublishMsg(reply)
}

// collectSubscribers asks the gateways holding pub/sub consumers of w's
// channel for them and claims each, adding the ones that accept to g.
func (h *Hub) collectSubscribers(ctx context.Context, w *waiter, g *group) error {
	subj, err := subjects.PipePub(w.ch.Namespace, w.ch.Name)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadName, err)
	}
	inbox := h.nc.NewInbox()
	sub, err := h.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("%w: subscribe: %v", ErrUnavailable, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := h.nc.PublishRequest(subj, inbox, nil); err != nil {
		return fmt.Errorf("%w: publish: %v", ErrUnavailable, err)
	}
	var heads []*entry
	wait := h.cfg.ClaimTimeout
	for len(g.got)+len(heads) < g.want {
		rctx, cancel := context.WithTimeout(ctx, wait)
		m, err := sub.NextMsgWithContext(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			break // no further answer within the stall
		}
		if m.Header.Get("Status") == "503" {
			break // nobody subscribed: no pub/sub consumer anywhere
		}
		wait = pubStall
		gw := m.Header.Get(hdrGateway)
		if _, err := subjects.PipeClaimAll(gw); err != nil || gw == "" {
			continue
		}
		for _, id := range m.Header.Values(hdrID) {
			if len(g.got)+len(heads) >= g.want {
				break
			}
			if id == "" || len(id) > maxIDLen {
				continue
			}
			if _, err := strconv.ParseUint(id, 36, 64); err != nil {
				continue
			}
			heads = append(heads, &entry{info: subjects.PipeEntryInfo{
				Namespace: w.ch.Namespace, Name: w.ch.Name, Role: subjects.PipeConsumer, Gateway: gw,
			}, id: id})
		}
	}
	for _, head := range heads {
		p, err := h.claim(ctx, w, head, nil)
		if err != nil {
			return err
		}
		if p != nil {
			g.add(p)
		}
	}
	return nil
}

// subscribe runs a pub/sub consumer (GET ?pubsub=true) until a pub/sub
// producer claims it.
func (h *Hub) subscribe(ctx context.Context, ch Channel) (*pairing, error) {
	start := time.Now()
	w, wctx, done, err := h.join(ctx, ch, subjects.PipeConsumer, Meta{Length: -1, Pub: true}, nil)
	if err != nil {
		return nil, err
	}
	defer done()
	w.enqueued(0) // waiting, though not in the queue
	if err := h.pubJoin(wctx, ch, w.id); err != nil {
		if _, ok := w.end(); !ok {
			h.refuse(<-w.claims)
		}
		if errors.Is(err, ErrBadName) {
			return nil, err
		}
		return nil, h.reason(wctx, err)
	}
	defer h.pubLeave(ch, w.id)
	p, err := h.await(wctx, w)
	if err != nil {
		return nil, h.reason(wctx, err)
	}
	h.m.wait.Observe(time.Since(start).Seconds())
	return p, nil
}
