package pipe

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// TestSweepVanishedGateway checks that entries left by a gateway that
// died without cleaning up are skipped by matchers and swept away.
func TestSweepVanishedGateway(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	h := NewHub(Config{SweepInterval: 50 * time.Millisecond, ClaimTimeout: time.Second},
		protocol.Deps{NC: nc, JS: js, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Close()

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
