package megaphone

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/jsutil"
	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// claimSlack is how long a reader claim outlives its poll's deadline, so a
// reader that vanished without releasing frees within PollDuration+10s.
const claimSlack = 10 * time.Second

// Broker is the transport-agnostic Megaphone core: it creates channels,
// stores events, runs polls and disposes expired channels.
type Broker struct {
	cfg      Config
	replicas int
	parts    int // partitions of the event stream and the channels and readers buckets
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *slog.Logger
	m        *metrics

	events   []jetstream.Stream   // by partition
	batch    *batchGets           // nil: the stream has replicas, read through its leader
	channels []jetstream.KeyValue // by partition
	disposed jetstream.KeyValue
	codec    *tokenCodec
	wakeups  *wakeups
	cache    *existsCache
	revs     *revCache // key revisions this gateway wrote last (see revCache)
	acks     *ackSlots // reply subscriptions of event publishes
	// maxPayload is nc.MaxPayload() as last read (see checkSize).
	maxPayload atomic.Int64
	// purgeAPIs are the purge API subjects of the event stream, by partition.
	purgeAPIs []string
	hooks     *webhook
	// soleGateway: NATS is this gateway's embedded server, so one
	// subscription to every channel's wake-ups brings nothing another
	// gateway's readers asked for (see wakeups).
	soleGateway bool
	reapers     []jetstream.ConsumeContext // one per channels-bucket partition
	// holder is this gateway's id, the value of the reader claims it
	// writes; handoffs answers requests for the claims it holds idle
	// (see hold.go); closing: shutdown began, polls release their claims.
	holder   string
	handoffs *nats.Subscription
	closing  atomic.Bool

	closeOnce sync.Once
}

// NewBroker returns a Broker on deps.NC and deps.JS, with cfg's unset
// fields at their defaults; call [Broker.Provision] before use. It uses
// deps.Replicas (0 = 1), deps.Partitions (0 = 1), deps.Logger (nil = discard) and deps.Registry.
func NewBroker(cfg Config, deps protocol.Deps) *Broker {
	cfg = cfg.withDefaults()
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("component", "megaphone")
	m := newMetrics(deps.Registry)
	parts := max(deps.Partitions, 1)
	purgeAPIs := make([]string, parts)
	for p := range parts {
		purgeAPIs[p] = subjects.JSStreamPurge(subjects.MegaphoneStreamOf(p, parts))
	}
	return &Broker{
		cfg:         cfg,
		replicas:    max(deps.Replicas, 1),
		parts:       parts,
		nc:          deps.NC,
		js:          deps.JS,
		log:         log,
		m:           m,
		cache:       newExistsCache(cacheTTL),
		revs:        newRevCache(cfg.PollDuration / 2),
		acks:        newAckSlots(deps.NC),
		purgeAPIs:   purgeAPIs,
		hooks:       newWebhook(cfg.WebhookURL, log, m.webhook),
		soleGateway: deps.SoleGateway,
		holder:      randomAlnum(22),
	}
}

// Provision creates the stream and buckets (idempotent, safe when
// gateways start at once), loads the cluster key and starts the
// background work: wake-up dispatch, expiry handling, webhooks.
func (b *Broker) Provision(ctx context.Context) error {
	kv, err := b.ensureStore(ctx)
	if err != nil {
		return err
	}
	key, err := loadClusterKey(ctx, kv)
	if err != nil {
		return err
	}
	if b.codec, err = newTokenCodec(key); err != nil {
		return err
	}
	if limit := int64(b.cfg.MaxEventBytes); limit > b.nc.MaxPayload()-511 {
		b.log.Warn("megaphone.max_event_bytes is above what a NATS message carries; the NATS limit applies",
			"max_event_bytes", limit, "max_payload", b.nc.MaxPayload())
	}
	if b.replicas <= 1 {
		if b.batch, err = newBatchGets(b.nc); err != nil {
			return err
		}
	}
	if b.wakeups, err = startWakeups(b.nc, b.log, b.cache, b.soleGateway, b.cfg.PollDuration/2); err != nil {
		return err
	}
	if err := b.startHandoffs(); err != nil {
		return err
	}
	return b.startReapers(ctx)
}

// ensureStore creates the streams and the buckets (every partition), all
// at once (none depends on another), and returns the bucket of the
// cluster key.
func (b *Broker) ensureStore(ctx context.Context) (keysKV jetstream.KeyValue, err error) {
	kvCfg := func(bucket, desc string) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{Bucket: bucket, Description: desc, Storage: jetstream.FileStorage,
			Replicas: b.replicas, LimitMarkerTTL: b.cfg.MarkerTTL}
	}
	disp := kvCfg(subjects.MegaphoneDisposedBucket, "Megaphone disposal guard")
	disp.LimitMarkerTTL, disp.TTL = 0, 24*time.Hour
	keys := kvCfg(subjects.MegaphoneKeysBucket, "Megaphone producer-token key")
	keys.LimitMarkerTTL = 0
	b.events = make([]jetstream.Stream, b.parts)
	b.channels = make([]jetstream.KeyValue, b.parts)
	steps := []func(context.Context) error{
		func(ctx context.Context) (err error) {
			b.disposed, err = jsutil.EnsureKV(ctx, b.js, disp)
			return err
		},
		func(ctx context.Context) (err error) {
			keysKV, err = jsutil.EnsureKV(ctx, b.js, keys)
			return err
		},
	}
	for p := range b.parts {
		steps = append(steps, b.ensurePartition(p, kvCfg)...)
	}
	return keysKV, jsutil.Parallel(ctx, steps...)
}

// ensurePartition returns the steps that create partition p's event
// stream, channels bucket and readers bucket.
func (b *Broker) ensurePartition(p int, kvCfg func(bucket, desc string) jetstream.KeyValueConfig) []func(context.Context) error {
	return []func(context.Context) error{
		func(ctx context.Context) (err error) {
			b.events[p], err = jsutil.EnsureStream(ctx, b.js, jetstream.StreamConfig{
				Name:                 subjects.MegaphoneStreamOf(p, b.parts),
				Description:          "Megaphone channel buffers",
				Subjects:             []string{subjects.MegaphoneEventsAllIn(p, b.parts)},
				Storage:              jetstream.FileStorage,
				Replicas:             b.replicas,
				MaxMsgsPerSubject:    int64(b.cfg.BufferSize),
				Discard:              jetstream.DiscardNew,
				DiscardNewPerSubject: true,
				Duplicates:           time.Minute,
				AllowDirect:          b.replicas <= 1,
				RePublish:            republish(p, b.parts),
			})
			return err
		},
		func(ctx context.Context) (err error) {
			b.channels[p], err = jsutil.EnsureKV(ctx, b.js, kvCfg(subjects.MegaphoneChannelsBucketOf(p, b.parts), "Megaphone live channels"))
			return err
		},
		func(ctx context.Context) (err error) {
			_, err = jsutil.EnsureKV(ctx, b.js, kvCfg(subjects.MegaphoneReadersBucketOf(p, b.parts), "Megaphone reader claims"))
			return err
		},
	}
}

// republish is the event-stream partition p's republish of every stored
// event on its channel's wake-up subject.
func republish(p, k int) *jetstream.RePublish {
	src, dst := subjects.MegaphoneRepublishOf(p, k)
	return &jetstream.RePublish{Source: src, Destination: dst}
}

// part is the partition of channel id.
func (b *Broker) part(id string) int { return subjects.MegaphonePartition(id, b.parts) }

// loadClusterKey returns the cluster's AEAD key, creating it when this is
// the first gateway. Create makes concurrent gateways agree on one key.
func loadClusterKey(ctx context.Context, kv jetstream.KeyValue) ([]byte, error) {
	for {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		if _, err := kv.Create(ctx, subjects.MegaphoneTokenKey, key); err == nil {
			return key, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("megaphone: create token key: %w", err)
		}
		e, err := kv.Get(ctx, subjects.MegaphoneTokenKey)
		if err == nil && len(e.Value()) == 32 {
			return e.Value(), nil
		}
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("megaphone: read token key: %w", err)
		}
		select { // a follower has not applied the winner's create yet
		case <-ctx.Done():
			return nil, fmt.Errorf("megaphone: read token key: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops background work. Open polls must have ended.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.closing.Store(true)
		b.releaseHeld(5 * time.Second)
		if b.handoffs != nil {
			_ = b.handoffs.Unsubscribe()
		}
		for _, r := range b.reapers {
			r.Stop()
			<-r.Closed()
		}
		if b.wakeups != nil {
			b.wakeups.close()
		}
		b.batch.close()
		b.acks.close()
		b.hooks.close()
	})
	return nil
}

// Agent is the agent name of addresses this broker issues.
func (b *Broker) Agent() string { return b.cfg.Agent }
