package protocol

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrShuttingDown is returned by [Tracker.Begin] once shutdown started.
var ErrShuttingDown = errors.New("gateway is shutting down")

// Tracker tracks long-lived requests (polls, pipe transfers, WebSockets).
// http.Server.Shutdown neither ends them nor sees hijacked connections, so
// the gateway cancels them here and waits for their handlers to return.
type Tracker struct {
	stop   context.Context
	cancel context.CancelFunc
	// last ends the streams begun with BeginLast, once the others are
	// done; lwg counts those streams.
	last       context.Context
	cancelLast context.CancelFunc
	mu         sync.Mutex
	closed     bool
	wg         sync.WaitGroup
	lwg        sync.WaitGroup
	open       *prometheus.GaugeVec
}

// NewTracker returns a Tracker whose open-stream gauge is registered on reg.
func NewTracker(reg prometheus.Registerer) *Tracker {
	stop, cancel := context.WithCancel(context.Background())
	last, cancelLast := context.WithCancel(context.Background())
	t := &Tracker{
		stop:       stop,
		cancel:     cancel,
		last:       last,
		cancelLast: cancelLast,
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_open_streams",
			Help: "Long-lived requests in progress, by kind (poll, sse, pipe, websocket, relay).",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(t.open)
	}
	return t
}

// Begin registers a long-lived request of the given kind. The returned
// context ends when parent ends or shutdown begins; done must be called
// exactly once when the handler is finished.
func (t *Tracker) Begin(parent context.Context, kind string) (context.Context, func(), error) {
	return t.begin(parent, kind, endAtStop)
}

// BeginDrain registers a request that shutdown lets finish instead of
// cancelling it: an exchange with side effects elsewhere (a relayed HTTP
// request) must not be cut after the far side acted on it, or the
// client's retry would act twice. Shutdown still waits for it, bounded by
// its grace period, after which the HTTP server's Close cancels it. The
// returned context is parent itself.
func (t *Tracker) BeginDrain(parent context.Context, kind string) (context.Context, func(), error) {
	return t.begin(parent, kind, endNever)
}

// BeginLast registers a long-lived connection that shutdown ends last:
// its context ends only once every other tracked request returned (the
// drained ones included) and what [Tracker.ShutdownAfter] waits for is
// done, or the grace period is over. A relayed upgraded connection is
// one: it must not be cut while the ordinary requests it may belong to
// still finish.
func (t *Tracker) BeginLast(parent context.Context, kind string) (context.Context, func(), error) {
	return t.begin(parent, kind, endLast)
}

// When shutdown ends a tracked request.
const (
	endAtStop = iota // when shutdown begins
	endNever         // never: it drains
	endLast          // after everything else
)

func (t *Tracker) begin(parent context.Context, kind string, end int) (context.Context, func(), error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, nil, ErrShuttingDown
	}
	wg := &t.wg
	if end == endLast {
		wg = &t.lwg
	}
	wg.Add(1)
	t.mu.Unlock()
	// A drained request keeps its parent's context: nothing here would
	// cancel it before done, so a context of its own would only cost.
	ctx, cancel := parent, func() {}
	stopAfter := func() bool { return false }
	switch end {
	case endAtStop:
		ctx, cancel = context.WithCancel(parent)
		stopAfter = context.AfterFunc(t.stop, cancel)
	case endLast:
		ctx, cancel = context.WithCancel(parent)
		stopAfter = context.AfterFunc(t.last, cancel)
	}
	g := t.open.WithLabelValues(kind)
	g.Inc()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			stopAfter()
			cancel()
			g.Dec()
			wg.Done()
		})
	}, nil
}

// Stopping is closed when shutdown begins.
func (t *Tracker) Stopping() <-chan struct{} { return t.stop.Done() }

// StopContext ends when shutdown begins. Requests begun with BeginDrain
// on it share it instead of each having a context of its own (a parked
// Megaphone poll ends at shutdown like a Begin one, without the cost).
func (t *Tracker) StopContext() context.Context { return t.stop }

// StoppingLast is closed when shutdown ends the streams begun with
// BeginLast.
func (t *Tracker) StoppingLast() <-chan struct{} { return t.last.Done() }

// Shutdown is ShutdownAfter(ctx, nil).
func (t *Tracker) Shutdown(ctx context.Context) error { return t.ShutdownAfter(ctx, nil) }

// ShutdownAfter refuses new streams, cancels open ones (except those
// begun with BeginDrain or BeginLast) and waits for their handlers to
// return; then, once before is closed too (nil: at once), it cancels the
// streams begun with BeginLast and waits for their handlers. When ctx
// ends first it cancels the last ones at once and returns ctx's error.
func (t *Tracker) ShutdownAfter(ctx context.Context, before <-chan struct{}) error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	defer t.cancelLast()
	if err := wait(ctx, &t.wg); err != nil {
		return err
	}
	if before != nil {
		select {
		case <-before:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t.cancelLast()
	return wait(ctx, &t.lwg)
}

// wait waits for wg or ctx's end.
func wait(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
