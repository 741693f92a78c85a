package jsutil

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// records is a slog handler that keeps every record.
type records struct {
	mu  sync.Mutex
	got []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func attr(rec slog.Record, key string) string {
	v := ""
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// TestRetryShortFirstAttempts: call timeouts are 1 s twice, then double up
// to 5 s; every retry is logged at WARN with what and its error; what is
// pending exactly while it is being provisioned.
func TestRetryShortFirstAttempts(t *testing.T) {
	rec := &records{}
	p := NewProgress(slog.New(rec))
	ctx := WithProgress(context.Background(), p)
	var timeouts []time.Duration
	err := retry(ctx, createSchedule, "stream S", func(ctx context.Context) error {
		dl, _ := ctx.Deadline()
		timeouts = append(timeouts, time.Until(dl))
		if got := p.Pending(); !slices.Equal(got, []string{"stream S"}) {
			t.Errorf("pending during the call = %v", got)
		}
		if len(timeouts) < 6 {
			return context.DeadlineExceeded
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{time.Second, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, d := range timeouts {
		if d > want[i] || d < want[i]-200*time.Millisecond {
			t.Errorf("attempt %d call timeout %s, want %s", i+1, d, want[i])
		}
	}
	if got := p.Pending(); len(got) != 0 {
		t.Errorf("pending after = %v", got)
	}
	if len(rec.got) != 5 {
		t.Fatalf("%d log records, want 5 (one per retry)", len(rec.got))
	}
	for _, r := range rec.got {
		if r.Level != slog.LevelWarn || attr(r, "what") != "stream S" || attr(r, "err") == "" {
			t.Errorf("retry record %v %q what=%q err=%q", r.Level, r.Message, attr(r, "what"), attr(r, "err"))
		}
	}
}

// TestRetryStopsOnPermanentError: an error retrying cannot fix ends the
// loop at once.
func TestRetryStopsOnPermanentError(t *testing.T) {
	calls := 0
	overlap := &jetstream.APIError{Code: 400, ErrorCode: 10065, Description: "subjects overlap with an existing stream"}
	err := retry(context.Background(), createSchedule, "stream S", func(context.Context) error { calls++; return overlap })
	if !errors.Is(err, overlap) || calls != 1 {
		t.Fatalf("err %v after %d calls, want the API error after 1", err, calls)
	}
}

// TestParallel: steps run at once; the first error cancels the others and
// is the one returned.
func TestParallel(t *testing.T) {
	boom := errors.New("boom")
	started := make(chan struct{})
	err := Parallel(context.Background(),
		func(ctx context.Context) error {
			close(started)
			<-ctx.Done() // ends only because the other step failed
			return ctx.Err()
		},
		func(context.Context) error { <-started; return boom },
	)
	if !errors.Is(err, boom) {
		t.Fatalf("Parallel = %v, want boom", err)
	}
	if err := Parallel(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
