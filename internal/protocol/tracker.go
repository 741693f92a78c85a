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
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	open   *prometheus.GaugeVec
}

// NewTracker returns a Tracker whose open-stream gauge is registered on reg.
func NewTracker(reg prometheus.Registerer) *Tracker {
	stop, cancel := context.WithCancel(context.Background())
	t := &Tracker{
		stop:   stop,
		cancel: cancel,
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
	return t.begin(parent, kind, true)
}

// BeginDrain registers a request that shutdown lets finish instead of
// cancelling it: an exchange with side effects elsewhere (a relayed HTTP
// request) must not be cut after the far side acted on it, or the
// client's retry would act twice. Shutdown still waits for it, bounded by
// its grace period, after which the HTTP server's Close cancels it. The
// returned context is parent itself.
func (t *Tracker) BeginDrain(parent context.Context, kind string) (context.Context, func(), error) {
	return t.begin(parent, kind, false)
}

func (t *Tracker) begin(parent context.Context, kind string, cancelOnStop bool) (context.Context, func(), error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, nil, ErrShuttingDown
	}
	t.wg.Add(1)
	t.mu.Unlock()
	// A drained request keeps its parent's context: nothing here would
	// cancel it before done, so a context of its own would only cost.
	ctx, cancel := parent, func() {}
	stopAfter := func() bool { return false }
	if cancelOnStop {
		ctx, cancel = context.WithCancel(parent)
		stopAfter = context.AfterFunc(t.stop, cancel)
	}
	g := t.open.WithLabelValues(kind)
	g.Inc()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			stopAfter()
			cancel()
			g.Dec()
			t.wg.Done()
		})
	}, nil
}

// Stopping is closed when shutdown begins.
func (t *Tracker) Stopping() <-chan struct{} { return t.stop.Done() }

// Shutdown refuses new streams, cancels open ones (except those begun with
// BeginDrain) and waits for their handlers to return or ctx to end.
func (t *Tracker) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
