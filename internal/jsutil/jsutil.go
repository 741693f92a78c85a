// Package jsutil creates the JetStream streams and KV buckets Switchboard
// needs, idempotently and safely when several gateways start at once.
package jsutil

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

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

// retry calls fn until it succeeds, fails for good, or ctx ends.
func retry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(callCtx)
		cancel()
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return fmt.Errorf("jsutil: %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jsutil: %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// EnsureStream creates the stream or updates it to cfg.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	var s jetstream.Stream
	err := retry(ctx, "stream "+cfg.Name, func(ctx context.Context) error {
		var err error
		s, err = js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	return s, err
}

// EnsureKV creates the bucket or updates it to cfg.
func EnsureKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := retry(ctx, "bucket "+cfg.Bucket, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	return kv, err
}
