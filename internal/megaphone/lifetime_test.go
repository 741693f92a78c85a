package megaphone_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// hookSink records on-channel-deleted webhook calls.
type hookSink struct {
	mu    sync.Mutex
	calls [][]string
	srv   *httptest.Server
}

func newHookSink(t *testing.T) *hookSink {
	h := &hookSink{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Channels []string }
		raw, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || json.Unmarshal(raw, &body) != nil || len(body.Channels) == 0 {
			t.Errorf("webhook got %s %q", r.Method, raw)
		}
		h.mu.Lock()
		h.calls = append(h.calls, body.Channels)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// channels returns every channel reported so far, sorted, with repeats.
func (h *hookSink) channels() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, c := range h.calls {
		out = append(out, c...)
	}
	sort.Strings(out)
	return out
}

func buffered(t *testing.T, natsURL, consumer string) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, k := strings.Split(consumer, ".")[1], harness.Partitions()
	s, err := js.Stream(ctx, subjects.MegaphoneStreamOf(subjects.MegaphonePartition(id, k), k))
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := subjects.MegaphoneEventsIn(id, k)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subj]
}

// TestExpiry: a channel never read dies ChannelTTL after creation, with its
// buffered events, within 10 s; the webhook reports it once; metrics count.
func TestExpiry(t *testing.T) {
	hook := newHookSink(t)
	gw := start(t, fast(time.Second, 2*time.Second), func(c *gateway.Config) { c.Megaphone.WebhookURL = hook.srv.URL })
	c := create(t, gw.URL())
	keep := create(t, gw.URL())
	mustWrite(t, gw.URL(), c.ProducerAddress, "s", `1`)
	mustWrite(t, gw.URL(), c.ProducerAddress, "s", `2`)
	if n := buffered(t, gw.EmbeddedURL(), c.ConsumerAddress); n != 2 {
		t.Fatalf("buffered = %d", n)
	}
	created := time.Now()
	// keep is read every second: it must outlive its TTL.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := do(t, "GET", gw.URL()+"/read/"+keep.ConsumerAddress, "", "")
			if r.Status != 200 {
				t.Errorf("reading the kept channel = %d %s", r.Status, r.Body)
				return
			}
		}
	}()
	natstest.Eventually(t, 15*time.Second, func() error {
		if exists(t, gw.URL(), c.ProducerAddress) {
			return errors.New("channel still exists")
		}
		return nil
	})
	if r := write(t, gw.URL(), c.ProducerAddress, "s", `3`); r.Status != 404 || r.code() != "NOT_FOUND" {
		t.Fatalf("write after TTL = %d %s", r.Status, r.Body)
	}
	if gone := time.Since(created); gone > 2*time.Second+10*time.Second {
		t.Fatalf("channel gone only after %s", gone)
	}
	if r := do(t, "GET", gw.URL()+"/read/"+c.ConsumerAddress, "", ""); r.Status != 404 {
		t.Fatalf("read after expiry = %d", r.Status)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := buffered(t, gw.EmbeddedURL(), c.ConsumerAddress); n != 0 {
			return fmt.Errorf("%d events still buffered", n)
		}
		if got := hook.channels(); len(got) != 1 || got[0] != c.ConsumerAddress {
			return fmt.Errorf("webhook calls %v", got)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if r := write(t, gw.URL(), keep.ProducerAddress, "s", `1`); r.Status != 201 {
		t.Fatalf("kept channel died: %d %s", r.Status, r.Body)
	}
	m := do(t, "GET", gw.URL()+"/metrics", "", "").Body
	for _, want := range []string{"megaphone_channel_created 2", "megaphone_channel_disposed 1", "megaphone_messages_lost 2",
		"megaphone_messages_received 3", "megaphone_messages_unroutable 1"} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, name := range []string{"megaphone_messages_read"} {
		if !strings.Contains(m, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
}

// TestNoExpiryUnderReader: a channel whose TTL is shorter than the poll
// lives while the reader is connected and ChannelTTL after the poll.
func TestNoExpiryUnderReader(t *testing.T) {
	gw := start(t, fast(4*time.Second, time.Second))
	c := create(t, gw.URL())
	p := openPoll(t, gw.URL(), c.ConsumerAddress)
	if _, err := p.end(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if r := write(t, gw.URL(), c.ProducerAddress, "s", `1`); r.Status != 201 {
		t.Fatalf("write right after a 4 s poll with a 1 s TTL = %d %s", r.Status, r.Body)
	}
	natstest.Eventually(t, 15*time.Second, func() error {
		if exists(t, gw.URL(), c.ProducerAddress) {
			return errors.New("channel still exists")
		}
		return nil
	})
}

// TestWebhookRetries: a webhook answering 503 is asked again until it
// accepts the batch; one answering 400 is asked once and the batch counts
// as failed. Both are visible in megaphone_webhook_batches_total.
func TestWebhookRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failures  int // answers before the first 200
		status    int
		wantCalls int32
		wantLine  string
	}{
		{"503 then ok", 2, http.StatusServiceUnavailable, 3, `megaphone_webhook_batches_total{result="delivered"} 1`},
		{"400 is final", 1 << 30, http.StatusBadRequest, 1, `megaphone_webhook_batches_total{result="failed"} 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			var got atomic.Value
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				if int(n) <= tc.failures {
					w.WriteHeader(tc.status)
					return
				}
				raw, _ := io.ReadAll(r.Body)
				got.Store(string(raw))
			}))
			defer hook.Close()
			gw := start(t, func(c *gateway.Config) {
				c.Megaphone.AdminToken = "secret"
				c.Megaphone.WebhookURL = hook.URL
			})
			ch := create(t, gw.URL())
			if r := do(t, "DELETE", gw.URL()+"/admin/channels/"+ch.ConsumerAddress, "", "", "Authorization", "Bearer secret"); r.Status != 200 {
				t.Fatalf("delete = %d %s", r.Status, r.Body)
			}
			natstest.Eventually(t, 15*time.Second, func() error {
				if m := do(t, "GET", gw.URL()+"/metrics", "", "").Body; !strings.Contains(m, tc.wantLine) {
					return fmt.Errorf("metrics lack %s", tc.wantLine)
				}
				return nil
			})
			if n := calls.Load(); n != tc.wantCalls {
				t.Fatalf("webhook called %d times, want %d", n, tc.wantCalls)
			}
			if tc.status == http.StatusServiceUnavailable {
				if want := `{"channels":["` + ch.ConsumerAddress + `"]}`; got.Load() != want {
					t.Fatalf("delivered %v, want %s", got.Load(), want)
				}
			}
		})
	}
}
