package megaphone_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/megaphone"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// realNoLeaderErrors returns the errors JetStream and NATS calls really
// return while a cluster has no leader for a stream, produced against a
// real server: a publish nobody answers (no stream leader subscribed), a
// publish answered by nobody in time, a core request that times out.
func realNoLeaderErrors(t *testing.T) map[string]error {
	t.Helper()
	srv := natstest.RunServer(t, nil)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	silent, err := nc.SubscribeSync("silent.>") // receives, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Unsubscribe()
	out := map[string]error{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, out["no responders"] = js.Publish(ctx, "nostream.x", []byte("x"))
	pctx, pcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer pcancel()
	_, out["publish timeout"] = js.Publish(pctx, "silent.js", []byte("x"))
	_, out["request timeout"] = nc.Request("silent.core", nil, 50*time.Millisecond)
	for k, err := range out {
		if err == nil {
			t.Fatalf("%s: no error", k)
		}
	}
	return out
}

// TestStatusOfNoLeader: a write that fails because the cluster is briefly
// without a leader is 503 SERVICE_UNAVAILABLE (the client may retry),
// never 500; other JetStream failures stay 500.
func TestStatusOfNoLeader(t *testing.T) {
	apiErr := func(status int, code jetstream.ErrorCode, desc string) error {
		// The shape jetstream.PublishMsg returns for an error pub ack.
		return fmt.Errorf("nats: %w", &jetstream.APIError{Code: status, ErrorCode: code, Description: desc})
	}
	retryable := realNoLeaderErrors(t)
	retryable["10008"] = apiErr(503, 10008, "JetStream system temporarily unavailable")
	retryable["10009"] = apiErr(500, 10009, "JetStream cluster can not handle request")
	retryable["10118"] = apiErr(500, 10118, "stream is offline")
	retryable["10163"] = apiErr(503, 10163, "expected last sequence per subject temporarily unavailable")
	retryable["reconnecting"] = nats.ErrConnectionReconnecting
	for name, err := range retryable {
		for _, wrapped := range []error{err, fmt.Errorf("megaphone: store event: %w", err), fmt.Errorf("megaphone: lookup: %w", err)} {
			if status, code := megaphone.StatusOf(wrapped); status != http.StatusServiceUnavailable || code != httpx.CodeUnavailable {
				t.Errorf("%s: StatusOf(%v) = %d %s, want 503 %s", name, wrapped, status, code, httpx.CodeUnavailable)
			}
		}
	}
	for name, err := range map[string]error{
		"wrong last sequence": apiErr(400, jetstream.JSErrCodeStreamWrongLastSequence, "wrong last sequence: 3"),
		"message size":        jetstream.ErrStreamMessageExceedsMaximum,
		"canceled":            fmt.Errorf("megaphone: store event: %w", context.Canceled),
		"bad subscription":    nats.ErrBadSubscription,
		"other":               errors.New("disk on fire"),
	} {
		if status, _ := megaphone.StatusOf(err); status != http.StatusInternalServerError {
			t.Errorf("%s: StatusOf(%v) = %d, want 500", name, err, status)
		}
	}
}

// TestWriteWithoutLeader writes to a channel through a gateway on a 3-node
// cluster while the node leading the events stream is stopped, and then
// while two nodes are down (no quorum, no leader at all): every write is
// 201 or 503 SERVICE_UNAVAILABLE with Retry-After, never 500, and writes
// succeed again once a leader is back.
func TestWriteWithoutLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster, stops nodes")
	}
	cluster, gws := harness.StartOnCluster(t, 1, func(c *gateway.Config) {
		fast(5*time.Second, time.Minute)(c)
		c.Megaphone.BufferSize = 100000 // no reader: never full
	})
	base := gws[0].URL()
	ch := create(t, base)
	mustWrite(t, base, ch.ProducerAddress, "s", `0`)
	n := 0
	writeOnce := func() reply {
		n++
		r := write(t, base, ch.ProducerAddress, "s", strconv.Itoa(n))
		checkWriteReply(t, r)
		return r
	}

	k := harness.Partitions()
	leader := streamLeader(t, cluster, subjects.MegaphoneStreamOf(subjects.MegaphonePartition(strings.Split(ch.ConsumerAddress, ".")[1], k), k))
	cluster.Stop(leader)
	start, ok, unavailable := time.Now(), 0, 0
	for (ok < 20 || time.Since(start) < 2*time.Second) && time.Since(start) < 40*time.Second {
		if r := writeOnce(); r.Status == http.StatusCreated {
			ok++
		} else {
			unavailable++
		}
	}
	t.Logf("stream leader stopped: %d writes answered 201, %d answered 503 in %s", ok, unavailable, time.Since(start).Round(time.Millisecond))
	if ok < 20 {
		t.Fatalf("only %d writes succeeded within 40 s of the leader stopping", ok)
	}

	second := (leader + 1) % 3
	cluster.Stop(second) // one node of three left: no quorum, no leader
	natstest.Eventually(t, 60*time.Second, func() error {
		r := writeOnce()
		if r.Status != http.StatusServiceUnavailable {
			return fmt.Errorf("write without quorum = %d %s", r.Status, r.Body)
		}
		t.Logf("write without quorum: %d Retry-After %s %s", r.Status, r.Header.Get("Retry-After"), r.Body)
		return nil
	})
	cluster.Restart(leader, second) // both, then wait once: one alone cannot catch up without the other
	natstest.Eventually(t, 60*time.Second, func() error {
		if r := writeOnce(); r.Status != http.StatusCreated {
			return fmt.Errorf("write after the nodes returned = %d %s", r.Status, r.Body)
		}
		return nil
	})
}

// checkWriteReply fails the test unless r is 201, or 503
// SERVICE_UNAVAILABLE with Retry-After.
func checkWriteReply(t *testing.T, r reply) {
	t.Helper()
	switch {
	case r.Status == http.StatusCreated:
	case r.Status == http.StatusServiceUnavailable && r.code() == httpx.CodeUnavailable:
		if got := r.Header.Get("Retry-After"); got != megaphone.RetryAfter {
			t.Errorf("503 without Retry-After %s (got %q): %s", megaphone.RetryAfter, got, r.Body)
		}
	default:
		t.Errorf("write = %d %s: want 201, or 503 %s with Retry-After", r.Status, r.Body, httpx.CodeUnavailable)
	}
}

// streamLeader returns the index in c.Servers of the leader of stream.
func streamLeader(t *testing.T, c *natstest.Cluster, stream string) int {
	t.Helper()
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	for i, srv := range c.Servers {
		if srv.Name() == info.Cluster.Leader {
			return i
		}
	}
	t.Fatalf("stream %s leader %q is none of the cluster's servers", stream, info.Cluster.Leader)
	return -1
}
