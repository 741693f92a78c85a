package protocol

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestTrackerShutdownEndsStreams(t *testing.T) {
	reg := prometheus.NewRegistry()
	tr := NewTracker(reg)
	ctx, done, err := tr.Begin(context.Background(), "poll")
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(tr.open.WithLabelValues("poll")); got != 1 {
		t.Fatalf("open streams = %v, want 1", got)
	}
	finished := make(chan struct{})
	go func() {
		<-ctx.Done() // the handler sees shutdown and ends its stream
		done()
		close(finished)
	}()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	<-finished
	if got := testutil.ToFloat64(tr.open.WithLabelValues("poll")); got != 0 {
		t.Fatalf("open streams after shutdown = %v", got)
	}
	if _, _, err := tr.Begin(context.Background(), "poll"); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("Begin after shutdown: %v", err)
	}
}

func TestTrackerShutdownBounded(t *testing.T) {
	tr := NewTracker(nil)
	_, done, _ := tr.Begin(context.Background(), "pipe")
	defer done()
	sctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := tr.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a stuck stream = %v, want deadline", err)
	}
}

func TestTrackerParentCancel(t *testing.T) {
	tr := NewTracker(nil)
	parent, cancel := context.WithCancel(context.Background())
	ctx, done, _ := tr.Begin(parent, "sse")
	defer done()
	cancel()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("stream context not cancelled with its request")
	}
}

func TestTrackerDrainsDrainStreams(t *testing.T) {
	tr := NewTracker(nil)
	ctx, done, err := tr.BeginDrain(context.Background(), "relay")
	if err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- tr.Shutdown(sctx)
	}()
	<-tr.Stopping()
	if ctx.Err() != nil {
		t.Fatal("a drained stream was cancelled by shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a drained stream was open", err)
	default:
	}
	done() // the exchange finishes on its own
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestTrackerEndsLastStreamsLast(t *testing.T) {
	tr := NewTracker(nil)
	_, drainDone, err := tr.BeginDrain(context.Background(), "relay")
	if err != nil {
		t.Fatal(err)
	}
	lastCtx, lastDone, err := tr.BeginLast(context.Background(), "relay_upgrade")
	if err != nil {
		t.Fatal(err)
	}
	before := make(chan struct{})
	shut := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- tr.ShutdownAfter(sctx, before)
	}()
	<-tr.Stopping()
	if _, _, err := tr.BeginLast(context.Background(), "relay_upgrade"); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("BeginLast after shutdown began: %v", err)
	}
	go func() { <-lastCtx.Done(); lastDone() }()
	// Neither the drained request's end nor before alone ends the last
	// stream; both do.
	drainDone()
	select {
	case <-tr.StoppingLast():
		t.Fatal("last streams ended before `before` was closed")
	case <-time.After(50 * time.Millisecond):
	}
	if lastCtx.Err() != nil {
		t.Fatal("last stream cancelled early")
	}
	close(before)
	if err := <-shut; err != nil {
		t.Fatalf("ShutdownAfter: %v", err)
	}
	select {
	case <-lastCtx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("last stream still open after shutdown")
	}
}

func TestTrackerLastStreamsEndWhenGraceOver(t *testing.T) {
	tr := NewTracker(nil)
	_, drainDone, _ := tr.BeginDrain(context.Background(), "relay")
	defer drainDone()
	lastCtx, lastDone, _ := tr.BeginLast(context.Background(), "relay_upgrade")
	defer lastDone()
	sctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := tr.ShutdownAfter(sctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ShutdownAfter with a stuck drained request = %v, want deadline", err)
	}
	select { // context.AfterFunc cancels on a goroutine of its own
	case <-lastCtx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("last stream not cancelled when the grace was over")
	}
}
