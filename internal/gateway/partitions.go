package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/jsutil"
	"github.com/switchboard/switchboard/internal/subjects"
)

// ErrPartitions means jetstream.partitions differs from the partition
// count the cluster's data is laid out with. The gateway refuses to start:
// with another count it would look for channels in the wrong streams.
var ErrPartitions = errors.New("gateway: jetstream.partitions does not match the cluster")

// agreePartitions makes this gateway agree with the cluster on the
// partition count. The first gateway records its count in
// [subjects.ClusterBucket] (a Create, so concurrent first gateways agree
// on one value); every later one compares. A cluster whose unpartitioned
// streams predate the record counts as 1.
func agreePartitions(ctx context.Context, js jetstream.JetStream, replicas, want int) error {
	want = max(want, 1)
	kv, err := jsutil.EnsureKV(ctx, js, jetstream.KeyValueConfig{
		Bucket:      subjects.ClusterBucket,
		Description: "Switchboard settings every gateway of the cluster must agree on",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return err
	}
	for {
		var have int
		err := jsutil.Call(ctx, "read partition count", func(ctx context.Context) error {
			var err error
			have, err = recordedPartitions(ctx, kv)
			return err
		})
		switch {
		case err == nil:
			return comparePartitions(want, have)
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return err
		}
		first := want
		if want != 1 && unpartitionedData(ctx, js) {
			first = 1
		}
		err = jsutil.Call(ctx, "record partition count", func(ctx context.Context) error {
			_, err := kv.Create(ctx, subjects.ClusterPartitionsKey, []byte(strconv.Itoa(first)))
			return err
		})
		if err == nil {
			return comparePartitions(want, first)
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("gateway: record partition count: %w", err)
		}
		select { // another gateway won; a follower may not have it yet
		case <-ctx.Done():
			return fmt.Errorf("gateway: read partition count: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// recordedPartitions reads the cluster's partition count.
func recordedPartitions(ctx context.Context, kv jetstream.KeyValue) (int, error) {
	e, err := kv.Get(ctx, subjects.ClusterPartitionsKey)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, err
		}
		return 0, fmt.Errorf("gateway: read partition count: %w", err)
	}
	n, err := strconv.Atoi(string(e.Value()))
	if err != nil || n < 1 || n > subjects.MaxPartitions {
		return 0, fmt.Errorf("gateway: bucket %s key %s holds %q, not a partition count in 1..%d",
			subjects.ClusterBucket, subjects.ClusterPartitionsKey, e.Value(), subjects.MaxPartitions)
	}
	return n, nil
}

func comparePartitions(want, have int) error {
	if want == have {
		return nil
	}
	return fmt.Errorf("%w: this gateway has jetstream.partitions %d but the cluster's data uses %d (bucket %s, key %s); "+
		"start every gateway with %d, or change the count only as the README's Capacity section describes",
		ErrPartitions, want, have, subjects.ClusterBucket, subjects.ClusterPartitionsKey, have)
}

// unpartitionedData reports whether the unpartitioned Megaphone or pipe
// stream exists: data of a cluster that ran before the count was recorded.
func unpartitionedData(ctx context.Context, js jetstream.JetStream) bool {
	for _, name := range []string{subjects.MegaphoneStream, subjects.PipeStream} {
		if _, err := js.Stream(ctx, name); err == nil {
			return true
		}
	}
	return false
}
