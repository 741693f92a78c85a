package jsutil

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Progress follows provisioning: which streams and buckets are being
// created right now, and every retry (logged at WARN with its error). A
// gateway shows [Progress.Pending] on /readyz while it starts.
//
// Attach it to a context with [WithProgress]: [EnsureStream] and
// [EnsureKV] report to the Progress of their context, the way net/http
// reports to an httptrace.ClientTrace, so the services that call them need
// no extra parameter. A nil *Progress ignores every report.
type Progress struct {
	log     *slog.Logger
	mu      sync.Mutex
	pending []string
}

// NewProgress returns a Progress that logs retries through log.
func NewProgress(log *slog.Logger) *Progress {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Progress{log: log}
}

type progressKey struct{}

// WithProgress returns a copy of ctx carrying p.
func WithProgress(ctx context.Context, p *Progress) context.Context {
	return context.WithValue(ctx, progressKey{}, p)
}

func progressFrom(ctx context.Context) *Progress {
	p, _ := ctx.Value(progressKey{}).(*Progress)
	return p
}

// Pending lists what is being provisioned right now ("stream SB_X",
// "bucket SB_Y"), in the order the work started.
func (p *Progress) Pending() []string {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.pending)
}

// Begin records what as pending; the returned func removes it. EnsureStream
// and EnsureKV call it for their stream or bucket.
func (p *Progress) Begin(what string) (done func()) {
	if p == nil {
		return func() {}
	}
	p.mu.Lock()
	p.pending = append(p.pending, what)
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if i := slices.Index(p.pending, what); i >= 0 {
			p.pending = slices.Delete(p.pending, i, i+1)
		}
	}
}

// retrying logs that attempt on what failed with err and is retried after
// wait.
func (p *Progress) retrying(what string, attempt int, err error, wait time.Duration) {
	if p == nil {
		return
	}
	p.log.Warn("provisioning retry", "what", what, "attempt", attempt, "err", err, "retry_in", wait.Round(time.Millisecond))
}
