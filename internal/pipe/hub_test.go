package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// startHub starts a Hub with cfg on a fresh nats-server and returns it
// with a JetStream client of the same connection and a context bounding
// the test; all three end with the test.
func startHub(t *testing.T, cfg Config) (*Hub, jetstream.JetStream, context.Context) {
	t.Helper()
	nc := natstest.Connect(t, natstest.RunServer(t, nil).URL())
	js, _ := jetstream.New(nc)
	h := NewHub(cfg, protocol.Deps{NC: nc, JS: js, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h, js, ctx
}

// TestSweepVanishedGateway checks that entries left by a gateway that
// died without cleaning up are skipped by matchers and swept away.
func TestSweepVanishedGateway(t *testing.T) {
	h, js, ctx := startHub(t, Config{SweepInterval: 50 * time.Millisecond, ClaimTimeout: time.Second})

	// A consumer entry of a gateway that no longer exists.
	ghost, _ := subjects.PipeEntry("ns", "ghost", subjects.PipeConsumer, "deadbeef")
	if _, err := js.Publish(ctx, ghost, []byte("1")); err != nil {
		t.Fatal(err)
	}
	if st, err := h.State(ctx); err != nil || len(st["ns"]) != 1 {
		t.Fatalf("state with a ghost: %v %v", st, err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		st, err := h.State(ctx)
		if err != nil {
			return err
		}
		if len(st) != 0 {
			return context.DeadlineExceeded
		}
		return nil
	})

	// A matcher skips a ghost it meets before the sweeper: the producer
	// ends up waiting instead of being paired with nobody.
	other, _ := subjects.PipeEntry("ns", "skip", subjects.PipeConsumer, "deadbeef")
	if _, err := js.Publish(ctx, other, []byte("1")); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer pcancel()
	if _, err := h.Produce(pctx, Channel{"ns", "skip"}, Meta{ContentType: "text/plain", Length: -1}); err == nil {
		t.Fatal("producer paired with a ghost")
	}
}

// TestFindLost checks the sweep's search for local parties whose queue
// entries vanished: a party whose entry is there is left alone however
// often the sweep runs; one whose entry is gone is ended with errLost on
// the second sweep in a row that misses it, not on the first.
func TestFindLost(t *testing.T) {
	// The sweeper's own loop stays out of the way: the test sweeps.
	h, _, ctx := startHub(t, Config{SweepInterval: time.Hour})

	ended := map[string]chan error{}
	for _, name := range []string{"kept", "lost"} {
		ended[name] = make(chan error, 1)
		go func() {
			d, err := h.Consume(ctx, Channel{"fl", name})
			if err == nil {
				_, err = io.Copy(io.Discard, d.Body)
				_ = d.Body.Close()
			}
			ended[name] <- err
		}()
	}
	waiters := map[string]*waiter{}
	natstest.Eventually(t, 10*time.Second, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, w := range h.waiters {
			if w.waitingAt() > 0 {
				waiters[w.ch.Name] = w
			}
		}
		if len(waiters) < 2 {
			return fmt.Errorf("%d of 2 consumers in the queue", len(waiters))
		}
		return nil
	})
	alive := func(name string) bool {
		select {
		case <-waiters[name].gone:
			return false
		default:
			return true
		}
	}

	var st sweepState
	for range 3 {
		st = h.sweep(ctx, st)
	}
	if !alive("kept") || !alive("lost") {
		t.Fatal("a sweep ended a party whose entry is in the queue")
	}

	// The entry vanishes, as it does when every node holding the memory
	// stream restarts.
	seq := waiters["lost"].waitingAt()
	if err := h.q.streams[partOf(seq)].DeleteMsg(ctx, seqOf(seq)); err != nil {
		t.Fatal(err)
	}
	st = h.sweep(ctx, st)
	if !alive("lost") {
		t.Fatal("ended on the first sweep that missed its entry")
	}
	st = h.sweep(ctx, st)
	if alive("lost") {
		t.Fatal("not ended on the second sweep that missed its entry")
	}
	select {
	case err := <-ended["lost"]:
		if !errors.Is(err, errLost) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("lost party ended with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("lost party still waits")
	}
	if n := testutil.ToFloat64(h.m.ended.WithLabelValues("lost")); n != 1 {
		t.Fatalf("unpaired{lost} = %v, want 1", n)
	}
	st = h.sweep(ctx, st)
	if !alive("kept") || len(st.missing) != 0 {
		t.Fatalf("kept party alive %v, missing %d", alive("kept"), len(st.missing))
	}

	// The kept party still pairs.
	go func() {
		if sink, err := h.Produce(ctx, Channel{"fl", "kept"}, Meta{Length: -1}); err == nil {
			_ = sink.Close()
		}
	}()
	select {
	case err := <-ended["kept"]:
		if err != nil {
			t.Fatalf("kept party: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("kept party not paired")
	}
}

// TestRetryRemoveOwner checks that a retried deletion deletes the entry
// of the party it was started for, and leaves alone another party's
// entry at that position (a queue that lost its state numbers new
// entries from 1 again).
func TestRetryRemoveOwner(t *testing.T) {
	h, js, ctx := startHub(t, Config{SweepInterval: time.Hour})

	subj, _ := subjects.PipeEntry("rr", "ch", subjects.PipeConsumer, "feedface")
	ack, err := js.Publish(ctx, subj, []byte("7"))
	if err != nil {
		t.Fatal(err)
	}
	seq := pos(0, ack.Sequence)
	retried := func(o owner) {
		t.Helper()
		h.retryRemove(seq, o)
		natstest.Eventually(t, 20*time.Second, func() error {
			if n := h.retrying.Load(); n != 0 {
				return fmt.Errorf("%d deletions retrying", n)
			}
			return nil
		})
	}
	for _, o := range []owner{{"feedface", "8"}, {"deadbeef", "7"}} {
		retried(o)
		if e, err := h.q.at(ctx, seq); err != nil || e == nil {
			t.Fatalf("entry of another party deleted by a retry for %v: %v %v", o, e, err)
		}
	}
	retried(owner{"feedface", "7"})
	if e, err := h.q.at(ctx, seq); err != nil || e != nil {
		t.Fatalf("retry for the entry's own party left %v (%v)", e, err)
	}
}
