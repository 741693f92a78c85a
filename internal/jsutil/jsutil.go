// Package jsutil creates the JetStream streams and KV buckets Switchboard
// needs, idempotently and safely when several gateways start at once, on a
// cluster that may have been formed a moment ago.
package jsutil

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Attempt timing. While a fresh cluster elects its meta leader, and for a
// second or two after while it works through the first burst of creates,
// JetStream API requests go unanswered; so the first two attempts get 1 s
// each and are retried soon (measured: ready ~1 s sooner than doubling
// from the first retry). The call timeout then doubles up to 5 s, so a
// busy but healthy cluster gets the time it needs instead of a stream of
// duplicate requests. The probe of [WaitJetStream] is cheap to answer, so
// it waits half as long.
var (
	createSchedule = schedule{firstCall: time.Second, maxCall: 5 * time.Second}
	probeSchedule  = schedule{firstCall: 500 * time.Millisecond, maxCall: 2 * time.Second}
)

const (
	firstWait = 100 * time.Millisecond
	maxWait   = time.Second
)

// schedule bounds the call timeout of each attempt.
type schedule struct{ firstCall, maxCall time.Duration }

// retryable reports whether err may pass once the cluster settles (meta
// leader elected, a peer back, a concurrent creator finished).
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 10039 JS not enabled for account, 10008 cluster not available,
		// 10074 / 10075 peers / insufficient resources while nodes join,
		// 10005 no suitable peers while a peer is still reported offline.
		switch apiErr.ErrorCode {
		case 10005, 10008, 10023, 10039, 10074, 10075, jetstream.JSErrCodeStreamNameInUse:
			return true
		}
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrStreamNameAlreadyInUse)
}

// retry calls fn until it succeeds, fails for good, or ctx ends. Each call
// gets its own timeout: sched.firstCall twice, then doubling up to
// sched.maxCall;
// attempts are spaced by a jittered, doubling wait. The Progress of ctx, if
// any, sees what is pending and every retry.
func retry(ctx context.Context, sched schedule, what string, fn func(ctx context.Context) error) error {
	p := progressFrom(ctx)
	done := p.Begin(what)
	defer done()
	callTimeout, wait := sched.firstCall, firstWait
	for attempt := 1; ; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		err := fn(callCtx)
		cancel()
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return fmt.Errorf("jsutil: %s: %w", what, err)
		}
		pause := wait/2 + rand.N(wait/2+1)
		p.retrying(what, attempt, err, pause)
		select {
		case <-ctx.Done():
			return fmt.Errorf("jsutil: %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(pause):
		}
		if attempt > 1 {
			callTimeout = min(callTimeout*2, sched.maxCall)
		}
		wait = min(wait*2, maxWait)
	}
}

// WaitJetStream waits until the JetStream API answers: on a fresh cluster,
// until the meta leader is elected and serving. Provisioning calls it once
// before creating every stream and bucket at once, so that a cluster still
// electing its leader gets one cheap probe per attempt rather than a
// create per resource, each of which it would have to work through once
// elected, long after its caller gave up on it.
func WaitJetStream(ctx context.Context, js jetstream.JetStream) error {
	return retry(ctx, probeSchedule, "JetStream API", func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
}

// Call runs one JetStream request with the provisioning retries: fn is
// retried while the error is one a settling cluster gives (no responders
// from a stream whose leader is still being elected, a timeout). For reads
// and writes at start-up that must not fail just because a bucket was
// created a moment ago.
func Call(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	return retry(ctx, createSchedule, what, fn)
}

// EnsureStream creates the stream or updates it to cfg.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	var s jetstream.Stream
	err := retry(ctx, createSchedule, "stream "+cfg.Name, func(ctx context.Context) error {
		var err error
		s, err = js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	return s, err
}

// EnsureKV creates the bucket or updates it to cfg.
func EnsureKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := retry(ctx, createSchedule, "bucket "+cfg.Bucket, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	return kv, err
}
