package pipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// waiting returns, for the entries matching filter, the channels where a
// producer or a consumer waits right now, by namespace. It reads the
// stream's per-subject counts, so it sees every gateway's parties.
func (h *Hub) waiting(ctx context.Context, filter string) (map[string][]string, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	counts, err := h.q.counts(ctx, filter)
	if err != nil {
		return nil, err
	}
	// Entries may be of parties already served or gone whose deletion is
	// still in flight on their gateway: ask those gateways to settle, then
	// read again (settle.go).
	gateways := map[string]bool{}
	for subj, n := range counts {
		if e, err := subjects.ParsePipeEntry(subj); err == nil && n > 0 && e.Role != subjects.PipeMatcher {
			gateways[e.Gateway] = true
		}
	}
	if len(gateways) > 0 {
		h.settleGateways(ctx, gateways)
		if counts, err = h.q.counts(ctx, filter); err != nil {
			return nil, err
		}
	}
	seen := map[Channel]bool{}
	out := map[string][]string{}
	for subj, n := range counts {
		e, err := subjects.ParsePipeEntry(subj)
		if err != nil || n == 0 || e.Role == subjects.PipeMatcher {
			continue
		}
		ch := Channel{Namespace: e.Namespace, Name: e.Name}
		if seen[ch] {
			continue
		}
		seen[ch] = true
		out[ch.Namespace] = append(out[ch.Namespace], ch.Name)
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out, nil
}

// State returns every namespace with someone waiting and its channels.
func (h *Hub) State(ctx context.Context) (map[string][]string, error) {
	return h.waiting(ctx, subjects.PipeQueueAll())
}

// Namespaces returns the namespaces where someone waits, sorted.
func (h *Hub) Namespaces(ctx context.Context) ([]string, error) {
	st, err := h.State(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(st))
	for ns := range st {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out, nil
}

// Channels returns the channels of ns where someone waits, sorted, or
// ErrNotFound when there are none.
func (h *Hub) Channels(ctx context.Context, ns string) ([]string, error) {
	filter, err := subjects.PipeNamespace(ns)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadName, err)
	}
	st, err := h.waiting(ctx, filter)
	if err != nil {
		return nil, err
	}
	if len(st[ns]) == 0 {
		return nil, fmt.Errorf("%w: namespace %q", ErrNotFound, ns)
	}
	return st[ns], nil
}

// Delete ends every party waiting on channel ns/name (every channel of ns
// when name is empty), on any gateway, with ErrGone. Their entries are
// purged first, so no matcher pairs them any more; then every gateway is
// told to end its local waiters.
func (h *Hub) Delete(ctx context.Context, ns, name string) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for _, role := range []string{subjects.PipeProducer, subjects.PipeConsumer} {
		filter, err := subjects.PipeRole(ns, name, role)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadName, err)
		}
		if err := h.q.purge(ctx, filter); err != nil {
			return err
		}
	}
	subj, err := subjects.PipeGone(ns, name)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadName, err)
	}
	if err := h.nc.Publish(subj, nil); err != nil {
		return fmt.Errorf("%w: announce deletion: %v", ErrUnavailable, err)
	}
	if err := h.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("%w: announce deletion: %v", ErrUnavailable, err)
	}
	return nil
}

// sweepLoop runs a sweep every SweepInterval (see [Hub.sweep]).
func (h *Hub) sweepLoop() {
	defer h.bg.Done()
	t := time.NewTicker(h.cfg.SweepInterval)
	defer t.Stop()
	var st sweepState
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.SweepInterval)
		st = h.sweep(ctx, st)
		cancel()
	}
}

// sweepState is what one sweep tells the next: the gateways that did not
// answer, and the local parties whose entries were missing.
type sweepState struct {
	strikes map[string]int     // by gateway id: sweeps in a row it was gone
	missing map[*waiter]uint64 // the position each was missing at
}

// sweep removes the entries of gateways that vanished without cleaning
// up (a crash): a gateway that does not answer its liveness ping with "no
// responders" on two sweeps in a row. And it ends, with errLost, the
// local parties whose entries the queue lost (see [Hub.findLost]).
func (h *Hub) sweep(ctx context.Context, st sweepState) sweepState {
	counts, err := h.q.counts(ctx, subjects.PipeQueueAll())
	if err != nil {
		h.log.Debug("pipe sweep skipped", "err", err)
		return st
	}
	next := sweepState{strikes: map[string]int{}, missing: h.findLost(ctx, counts, st.missing)}
	checked := map[string]bool{}
	for subj := range counts {
		e, err := subjects.ParsePipeEntry(subj)
		if err != nil || e.Gateway == h.id || checked[e.Gateway] {
			continue
		}
		checked[e.Gateway] = true
		if !h.gatewayGone(ctx, e.Gateway) {
			continue
		}
		next.strikes[e.Gateway] = st.strikes[e.Gateway] + 1
		if next.strikes[e.Gateway] < 2 {
			continue
		}
		if filter, err := subjects.PipeGatewayEntries(e.Gateway); err == nil && h.q.purge(ctx, filter) == nil {
			h.m.swept.Inc()
			h.log.Info("pipe: removed queue entries of a vanished gateway", "gateway", e.Gateway)
		}
	}
	return next
}

// findLost finds the local parties waiting in the queue whose entries it
// no longer holds, and ends those found missing on two sweeps in a row
// at the same position with errLost. It returns the ones missing now for
// the first time.
//
// A queue in memory storage loses its entries when every node holding it
// restarts, and a partner drops the entry of a party whose gateway did
// not answer its claim within the claim timeout (busy, or cut off from
// NATS for a moment); nobody would claim those parties again, and
// without a pipe.timeout they would wait until their clients gave up.
// counts (the entries per stored subject, read at the start of the
// sweep) tells which subjects hold fewer entries than this gateway has
// parties waiting there; only those parties' entries are read. Two
// sweeps in a row keep a party appended just after counts was read from
// counting as lost.
func (h *Hub) findLost(ctx context.Context, counts map[string]uint64, before map[*waiter]uint64) map[*waiter]uint64 {
	type local struct {
		w   *waiter
		seq uint64
	}
	bySubj := map[string][]local{}
	h.mu.Lock()
	for _, w := range h.waiters {
		if seq := w.waitingAt(); seq > 0 {
			subj := subjects.PipeInPartition(w.entrySubj, partOf(seq), h.q.partitions())
			bySubj[subj] = append(bySubj[subj], local{w, seq})
		}
	}
	h.mu.Unlock()
	missing := map[*waiter]uint64{}
	for subj, ws := range bySubj {
		if uint64(len(ws)) <= counts[subj] {
			continue
		}
		for _, l := range ws {
			e, err := h.q.at(ctx, l.seq)
			if err != nil {
				return missing // JetStream unavailable: nothing is known
			}
			if e != nil && e.owner() == h.owns(l.w) {
				continue
			}
			if before[l.w] != l.seq {
				missing[l.w] = l.seq
				continue
			}
			if l.w.forget(l.seq) {
				// Counted before the party is answered.
				h.m.ended.WithLabelValues("lost").Inc()
				h.log.Warn("pipe: a waiting party's queue entry was lost; it is told to send its request again", "role", l.w.role)
				l.w.endWith(errLost)
			}
		}
	}
	return missing
}

// gatewayGone reports whether nobody answers gateway's liveness subject.
func (h *Hub) gatewayGone(ctx context.Context, gateway string) bool {
	subj, err := subjects.PipeAlive(gateway)
	if err != nil {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, h.cfg.ClaimTimeout)
	defer cancel()
	_, err = h.nc.RequestWithContext(pctx, subj, nil)
	return errors.Is(err, nats.ErrNoResponders)
}

// opTimeout bounds a short operation whose caller gave no deadline.
const opTimeout = 10 * time.Second

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, opTimeout)
}
