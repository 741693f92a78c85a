package megaphone

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// webhookDelay collects disposals into one POST.
const webhookDelay = 200 * time.Millisecond

// webhookTimeout bounds one POST.
const webhookTimeout = 5 * time.Second

// webhookBackoff are the waits before the second, third and fourth
// attempt of a batch whose POST failed with a network error, 429 or 5xx.
var webhookBackoff = []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}

// webhook POSTs {"channels":[...]} to url when channels were deleted,
// batching disposals that happen close together. A POST that fails with a
// network error, 429 or 5xx is tried again after webhookBackoff; any other
// status is final. Retries stop when the gateway shuts down (the batch is
// logged as dropped). Delivery is best effort: a batch whose earlier
// attempt reached the receiver but whose answer was lost arrives twice.
type webhook struct {
	url     string
	log     *slog.Logger
	client  *http.Client
	results *prometheus.CounterVec
	quit    chan struct{}

	mu      sync.Mutex
	pending []string
	timer   *time.Timer
	closed  bool
	wg      sync.WaitGroup
}

func newWebhook(url string, log *slog.Logger, results *prometheus.CounterVec) *webhook {
	return &webhook{url: url, log: log.With("webhook", url), client: &http.Client{Timeout: webhookTimeout},
		results: results, quit: make(chan struct{})}
}

// add queues one deleted channel.
func (h *webhook) add(channel string) {
	if h.url == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.pending = append(h.pending, channel)
	if h.timer == nil {
		h.wg.Add(1)
		h.timer = time.AfterFunc(webhookDelay, func() {
			defer h.wg.Done()
			h.flush()
		})
	}
}

func (h *webhook) flush() {
	h.mu.Lock()
	batch := h.pending
	h.pending, h.timer = nil, nil
	h.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	body, _ := json.Marshal(map[string][]string{"channels": batch})
	for attempt := 0; ; attempt++ {
		retry, err := h.post(body)
		if err == nil {
			h.results.WithLabelValues("delivered").Inc()
			return
		}
		if !retry || attempt >= len(webhookBackoff) {
			h.results.WithLabelValues("failed").Inc()
			h.log.Warn("on-channel-deleted webhook failed", "channels", len(batch), "attempts", attempt+1, "err", err)
			return
		}
		h.log.Debug("on-channel-deleted webhook, retrying", "attempt", attempt+1, "err", err)
		t := time.NewTimer(webhookBackoff[attempt])
		select {
		case <-t.C:
		case <-h.quit:
			t.Stop()
			h.results.WithLabelValues("failed").Inc()
			h.log.Warn("on-channel-deleted webhook dropped at shutdown", "channels", len(batch), "attempts", attempt+1, "err", err)
			return
		}
	}
}

// post makes one attempt and says whether a failure is worth retrying.
func (h *webhook) post(body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("status %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
}

// close sends what is pending (one attempt), stops retries and waits for
// POSTs in flight.
func (h *webhook) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	t := h.timer
	h.mu.Unlock()
	close(h.quit) // the last flush below gets one attempt
	if t != nil && t.Stop() {
		h.wg.Done()
		h.flush()
	}
	h.wg.Wait()
	h.client.CloseIdleConnections()
}
