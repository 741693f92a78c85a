package megaphone

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// A poll that reached its deadline does not release its reader claim: the
// gateway holds it, idle, for the channel's next poll, which a client
// sends at once. Taken here, that poll renews the claim by compare-and-set
// on the held revision (see Open) and the cycle writes two KV keys instead
// of three, with no release between the end a client sees and its next
// poll. A poll that arrives at another gateway finds the claim live and
// asks the holder, on the holder's hold subject, to hand it over; the
// holder forgets the claim and answers, and the asking poll writes its own
// claim on the held revision. The claim's TTL still ends at its poll's
// deadline plus claimSlack: a holder that vanished frees it then, within
// the SPEC's poll_duration + 10 s, as a vanished reader's claim frees. A
// poll that ended early (client gone, shutdown) releases its claim as
// before, and a gateway that shuts down releases the claims it holds.

// handoffTimeout bounds a poll's wait for the holder of a claim.
const handoffTimeout = 2 * time.Second

// maxHandoff is the longest hand-off request a holder reads: a revision,
// a space and a channel id.
const maxHandoff = 20 + 1 + 64

// Answers to a hand-off request.
var (
	handoffGiven = []byte("given")
	handoffBusy  = []byte("busy")
)

// startHandoffs subscribes to this gateway's hold subject.
func (b *Broker) startHandoffs() error {
	subj, err := subjects.MegaphoneHold(b.holder)
	if err != nil {
		return err
	}
	b.handoffs, err = b.nc.Subscribe(subj, b.handOver)
	return err
}

// handOver answers another gateway's request for a claim this gateway
// holds idle: it forgets the claim, so no poll here renews it, and says
// "given"; a claim it does not hold idle at that revision (a poll here
// reads the channel, or the claim moved on) is "busy". The request is
// "<claim revision> <channel id>".
func (b *Broker) handOver(m *nats.Msg) {
	answer := handoffBusy
	if rev, id, ok := parseHandoff(m.Data); ok && b.revs.takeHeld(id, rev) {
		answer = handoffGiven
	}
	if m.Reply != "" {
		_ = m.Respond(answer)
	}
}

// parseHandoff reads a hand-off request; ok is false for anything but a
// revision and an alphanumeric channel id of bounded length.
func parseHandoff(data []byte) (rev uint64, id string, ok bool) {
	if len(data) > maxHandoff {
		return 0, "", false
	}
	r, rest, found := bytes.Cut(data, []byte(" "))
	if !found || len(rest) == 0 || len(rest) > 64 || !isAlnum(string(rest)) {
		return 0, "", false
	}
	rev, err := strconv.ParseUint(string(r), 10, 64)
	if err != nil || rev == 0 {
		return 0, "", false
	}
	return rev, string(rest), true
}

// askHolder asks the gateway that holds the channel's claim (claim is the
// key's live record; its value is the holder's id) to hand it over, and
// reports whether it did. A holder that is gone or does not answer within
// handoffTimeout keeps the claim until its TTL ends.
func (b *Broker) askHolder(ctx context.Context, id string, claim record) bool {
	holder := string(claim.data)
	if holder == b.holder {
		// This gateway holds it; an idle hold was taken by Open already.
		b.m.handoffs.WithLabelValues("busy").Inc()
		return false
	}
	subj, err := subjects.MegaphoneHold(holder)
	if err != nil {
		b.m.handoffs.WithLabelValues("busy").Inc()
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	req := strconv.AppendUint(nil, claim.rev, 10)
	req = append(append(req, ' '), id...)
	resp, err := b.nc.RequestWithContext(ctx, subj, req)
	switch {
	case err != nil:
		b.m.handoffs.WithLabelValues("unanswered").Inc()
		if !errors.Is(err, nats.ErrNoResponders) {
			b.log.Debug("reader claim hand-off", "channel", id, "err", err)
		}
		return false
	case bytes.Equal(resp.Data, handoffGiven):
		b.m.handoffs.WithLabelValues("given").Inc()
		return true
	default:
		b.m.handoffs.WithLabelValues("busy").Inc()
		return false
	}
}

// releaseHeld releases every claim this gateway holds idle (shutdown), a
// few at a time, within timeout.
func (b *Broker) releaseHeld(timeout time.Duration) {
	held := b.revs.takeAllHeld()
	if len(held) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	work := make(chan heldClaim)
	var wg sync.WaitGroup
	for range min(16, len(held)) {
		wg.Go(func() {
			for h := range work {
				claim, err := b.claimKey(h.id)
				if err == nil {
					_, err = claim.remove(ctx, h.rev, claimSlack)
				}
				if err != nil && !errors.Is(err, errConflict) {
					b.log.Warn("release held reader claim", "channel", h.id, "err", err)
				}
			}
		})
	}
	for _, h := range held {
		if ctx.Err() != nil {
			break
		}
		work <- h
	}
	close(work)
	wg.Wait()
}
