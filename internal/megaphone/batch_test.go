package megaphone_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/megaphone"
	"github.com/switchboard/switchboard/internal/natstest"
)

// TestBatchedReads: a poll reads the buffer many events per request. More
// events than one batch holds (by count, then by bytes) all arrive once,
// in order, and leave the buffer once delivered.
func TestBatchedReads(t *testing.T) {
	gw := start(t, fast(10*time.Second, 60*time.Second), func(c *gateway.Config) {
		c.Megaphone.BufferSize = 400
	})
	u := gw.URL()
	for _, tc := range []struct {
		name string
		n    int
		body func(i int) string
	}{
		{"more events than a batch", 300, func(i int) string { return strconv.Itoa(i) }},
		{"more bytes than a batch", 12, func(i int) string { return fmt.Sprintf(`"%d %s"`, i, strings.Repeat("x", 60<<10)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := create(t, u)
			for i := range tc.n {
				mustWrite(t, u, ch.ProducerAddress, "s", tc.body(i))
			}
			if got := buffered(t, gw.EmbeddedURL(), ch.ConsumerAddress); got != uint64(tc.n) {
				t.Fatalf("buffered before the read = %d, want %d", got, tc.n)
			}
			p := openPoll(t, u, ch.ConsumerAddress)
			for i := range tc.n {
				if ev := p.next(10 * time.Second); string(ev.Body) != tc.body(i) {
					t.Fatalf("event %d = %.40s…, want %.40s…", i, ev.Body, tc.body(i))
				}
			}
			p.close()
			// Delivered events are purged lazily; the last purge runs when
			// the gateway has seen the poll end, a moment after the close.
			natstest.Eventually(t, 10*time.Second, func() error {
				if got := buffered(t, gw.EmbeddedURL(), ch.ConsumerAddress); got != 0 {
					return fmt.Errorf("buffered after every event was read = %d, want 0", got)
				}
				return nil
			})
		})
	}
}

// TestWriterWokenWhenRoomFrees: a write waiting on a full buffer is woken
// by the reader freeing room, not by its own retry. The retry is set to a
// minute, so a write that completes sooner was woken.
func TestWriterWokenWhenRoomFrees(t *testing.T) {
	t.Cleanup(megaphone.SetRoomRetry(time.Minute))
	gw := start(t, fast(20*time.Second, 60*time.Second), func(c *gateway.Config) {
		c.Megaphone.BufferSize = 3
		c.Megaphone.WriteWait = 2 * time.Minute
	})
	u := gw.URL()
	ch := create(t, u)
	for i := range 3 {
		mustWrite(t, u, ch.ProducerAddress, "s", strconv.Itoa(i))
	}
	// Writers wait for room; a reader that stays open frees it event by
	// event while they wait.
	const waiting = 6
	done := make(chan reply, waiting)
	began := time.Now()
	for i := range waiting {
		go func() { done <- write(t, u, ch.ProducerAddress, "w", strconv.Itoa(10+i)) }()
	}
	p := openPoll(t, u, ch.ConsumerAddress)
	seen := map[string]bool{}
	for range 3 + waiting {
		seen[string(p.next(30*time.Second).Body)] = true
	}
	for range waiting {
		if r := <-done; r.Status != 201 {
			t.Fatalf("waiting write = %d %s", r.Status, r.Body)
		}
	}
	if took := time.Since(began); took > 30*time.Second {
		t.Fatalf("waiting writes took %s: they were not woken when room freed (retry is 1 min)", took)
	}
	if len(seen) != 3+waiting {
		t.Fatalf("read %d distinct events, want %d: %v", len(seen), 3+waiting, seen)
	}
	p.close()
}
