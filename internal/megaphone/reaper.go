package megaphone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/subjects"
)

// sweepDelay is how long after disposing a channel its subject is purged
// once more: a write that saw the channel alive just before it died (a
// cached sighting, a write waiting for room) may still land in between.
const sweepDelay = cacheTTL + 2*time.Second

// startReapers starts a reaper on every partition of the channels bucket.
func (b *Broker) startReapers(ctx context.Context) error {
	for p := range b.parts {
		if err := b.startReaper(ctx, subjects.MegaphoneChannelsBucketOf(p, b.parts)); err != nil {
			return err
		}
	}
	return nil
}

// startReaper binds this gateway to the durable consumer of bucket (one
// partition of the channels bucket), shared by every gateway, that
// delivers each change of a channel key to one of them. Expiry markers
// (per-key TTL) and purges become disposals.
func (b *Broker) startReaper(ctx context.Context, bucket string) error {
	stream := subjects.KVStream(bucket)
	var cons jetstream.Consumer
	var err error
	for attempt := 0; ; attempt++ {
		cons, err = b.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable:       subjects.MegaphoneReaper,
			Description:   "Megaphone channel expiry, shared by all gateways",
			DeliverPolicy: jetstream.DeliverNewPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       30 * time.Second,
			MaxAckPending: 100_000,
			FilterSubject: subjects.KVAllKeys(bucket),
			Replicas:      b.replicas,
		})
		if err == nil || attempt == 20 {
			break
		}
		select { // concurrent creators settle
		case <-ctx.Done():
			return fmt.Errorf("megaphone: reaper consumer: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("megaphone: reaper consumer: %w", err)
	}
	r, err := cons.Consume(func(msg jetstream.Msg) { b.reap(bucket, msg) }, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			b.log.Debug("reaper", "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("megaphone: reaper consume: %w", err)
	}
	b.reapers = append(b.reapers, r)
	return nil
}

// reap handles one change of a channel key of bucket.
func (b *Broker) reap(bucket string, msg jetstream.Msg) {
	if !isRemoval(msg.Headers()) {
		_ = msg.Ack()
		return
	}
	id, err := subjects.KeyFromKVSubject(bucket, msg.Subject())
	if err != nil {
		_ = msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	if meta.NumDelivered > 1 { // the second sweep, or a retry after a crash
		if _, err := b.purgeEvents(ctx, id); err != nil {
			_ = msg.NakWithDelay(time.Second)
			return
		}
		_ = msg.Ack()
		return
	}
	if _, err := b.dispose(ctx, id); err != nil {
		b.log.Warn("dispose channel", "channel", id, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.NakWithDelay(sweepDelay)
}

// dispose removes channel id's buffered events, announces its end and
// queues the webhook. Of all gateways and callers only the first does it
// (a Create on the disposal guard); the rest only purge again, which is
// idempotent. It reports whether this call was the first.
func (b *Broker) dispose(ctx context.Context, id string) (bool, error) {
	if _, err := b.disposed.Create(ctx, id, nil); errors.Is(err, jetstream.ErrKeyExists) {
		_, err := b.purgeEvents(ctx, id)
		return false, err
	} else if err != nil {
		return false, fmt.Errorf("megaphone: disposal guard: %w", err)
	}
	b.cache.forget(id)
	_ = b.nc.Publish(subjects.MegaphoneGone(), []byte(id))
	if _, err := b.purgeEvents(ctx, id); err != nil {
		return true, err
	}
	b.m.disposed.Inc()
	b.hooks.add(ConsumerAddress(b.cfg.Agent, id))
	b.log.Debug("channel disposed", "channel", id)
	return true, nil
}

// purgeEvents removes every buffered event of channel id and counts them
// as lost.
func (b *Broker) purgeEvents(ctx context.Context, id string) (uint64, error) {
	subj, err := subjects.MegaphoneEventsIn(id, b.parts)
	if err != nil {
		return 0, err
	}
	req, _ := json.Marshal(map[string]string{"filter": subj})
	msg, err := b.nc.RequestWithContext(ctx, subjects.JSStreamPurge(subjects.MegaphoneStreamOf(b.part(id), b.parts)), req)
	if err != nil {
		return 0, fmt.Errorf("megaphone: purge %s: %w", subj, err)
	}
	var resp struct {
		Success bool   `json:"success"`
		Purged  uint64 `json:"purged"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("megaphone: purge %s: %w", subj, err)
	}
	if resp.Error != nil || !resp.Success {
		return 0, fmt.Errorf("megaphone: purge %s: %v", subj, resp.Error)
	}
	b.m.lost.Add(float64(resp.Purged))
	return resp.Purged, nil
}
