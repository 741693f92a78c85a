package megaphone

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/jsutil"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Options configure a [Broker]. Zero values mean the documented defaults.
type Options struct {
	// Agent is the first part of every address. Default "main".
	Agent string
	// BufferSize is the number of events buffered per channel. Default 100.
	BufferSize int
	// WriteWait is how long a write waits for room. Default 10s.
	WriteWait time.Duration
	// PollDuration is the length of one read poll. Default 20s.
	PollDuration time.Duration
	// ChannelTTL is a channel's life after its last completed read (or
	// creation). Default 60s; at least 1s.
	ChannelTTL time.Duration
	// Replicas of the stream and buckets. Default 1.
	Replicas int
	// WebhookURL receives on-channel-deleted POSTs; empty = off.
	WebhookURL string
	// MarkerTTL is how long expiry markers stay in the buckets, which
	// bounds how long every gateway may be down without missing an
	// expiry. Default 1h.
	MarkerTTL time.Duration
}

func (o *Options) defaults() {
	if o.Agent == "" {
		o.Agent = "main"
	}
	if o.BufferSize <= 0 {
		o.BufferSize = 100
	}
	if o.WriteWait <= 0 {
		o.WriteWait = 10 * time.Second
	}
	if o.PollDuration <= 0 {
		o.PollDuration = 20 * time.Second
	}
	if o.ChannelTTL < time.Second {
		o.ChannelTTL = 60 * time.Second
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MarkerTTL < time.Second {
		o.MarkerTTL = time.Hour
	}
}

// claimSlack is how long a reader claim outlives its poll's deadline, so a
// reader that vanished without releasing frees within PollDuration+10s.
const claimSlack = 10 * time.Second

// Broker is the transport-agnostic Megaphone core: it creates channels,
// stores events, runs polls and disposes expired channels.
type Broker struct {
	opts Options
	nc   *nats.Conn
	js   jetstream.JetStream
	log  *slog.Logger
	m    *metrics

	events   jetstream.Stream
	channels jetstream.KeyValue
	disposed jetstream.KeyValue
	codec    *tokenCodec
	hub      *hub
	cache    *existsCache
	hooks    *webhook
	reaper   jetstream.ConsumeContext

	closeOnce sync.Once
}

// New returns a Broker; call [Broker.Provision] before use.
func New(opts Options, nc *nats.Conn, js jetstream.JetStream, logger *slog.Logger, reg prometheus.Registerer) *Broker {
	opts.defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("component", "megaphone")
	m := newMetrics(reg)
	return &Broker{
		opts:  opts,
		nc:    nc,
		js:    js,
		log:   log,
		m:     m,
		cache: newExistsCache(cacheTTL),
		hooks: newWebhook(opts.WebhookURL, log, m.webhook),
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
	if b.hub, err = startHub(b.nc, b.log, b.cache); err != nil {
		return err
	}
	return b.startReaper(ctx)
}

// ensureStore creates the stream and the buckets, all at once (none
// depends on another), and returns the bucket of the cluster key.
func (b *Broker) ensureStore(ctx context.Context) (keysKV jetstream.KeyValue, err error) {
	kvCfg := func(bucket, desc string) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{Bucket: bucket, Description: desc, Storage: jetstream.FileStorage,
			Replicas: b.opts.Replicas, LimitMarkerTTL: b.opts.MarkerTTL}
	}
	disp := kvCfg(subjects.MegaphoneDisposedBucket, "Megaphone disposal guard")
	disp.LimitMarkerTTL, disp.TTL = 0, 24*time.Hour
	keys := kvCfg(subjects.MegaphoneKeysBucket, "Megaphone producer-token key")
	keys.LimitMarkerTTL = 0
	err = jsutil.Parallel(ctx,
		func(ctx context.Context) (err error) {
			b.events, err = jsutil.EnsureStream(ctx, b.js, jetstream.StreamConfig{
				Name:                 subjects.MegaphoneStream,
				Description:          "Megaphone channel buffers",
				Subjects:             []string{subjects.MegaphoneEventsAll()},
				Storage:              jetstream.FileStorage,
				Replicas:             b.opts.Replicas,
				MaxMsgsPerSubject:    int64(b.opts.BufferSize),
				Discard:              jetstream.DiscardNew,
				DiscardNewPerSubject: true,
				Duplicates:           time.Minute,
			})
			return err
		},
		func(ctx context.Context) (err error) {
			b.channels, err = jsutil.EnsureKV(ctx, b.js, kvCfg(subjects.MegaphoneChannelsBucket, "Megaphone live channels"))
			return err
		},
		func(ctx context.Context) (err error) {
			_, err = jsutil.EnsureKV(ctx, b.js, kvCfg(subjects.MegaphoneReadersBucket, "Megaphone reader claims"))
			return err
		},
		func(ctx context.Context) (err error) {
			b.disposed, err = jsutil.EnsureKV(ctx, b.js, disp)
			return err
		},
		func(ctx context.Context) (err error) {
			keysKV, err = jsutil.EnsureKV(ctx, b.js, keys)
			return err
		},
	)
	return keysKV, err
}

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
		if b.reaper != nil {
			b.reaper.Stop()
			<-b.reaper.Closed()
		}
		if b.hub != nil {
			b.hub.close()
		}
		b.hooks.close()
	})
	return nil
}

// Agent is the agent name of addresses this broker issues.
func (b *Broker) Agent() string { return b.opts.Agent }
