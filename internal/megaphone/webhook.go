package megaphone

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// webhookDelay collects disposals into one POST.
const webhookDelay = 200 * time.Millisecond

// webhookTimeout bounds one POST.
const webhookTimeout = 5 * time.Second

// webhook POSTs {"channels":[...]} to url when channels were deleted,
// batching disposals that happen close together. Delivery is at most
// once: a failed POST is logged, not retried.
type webhook struct {
	url    string
	log    *slog.Logger
	client *http.Client

	mu      sync.Mutex
	pending []string
	timer   *time.Timer
	closed  bool
	wg      sync.WaitGroup
}

func newWebhook(url string, log *slog.Logger) *webhook {
	return &webhook{url: url, log: log.With("webhook", url), client: &http.Client{Timeout: webhookTimeout}}
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
	ctx, cancel := context.WithTimeout(context.Background(), webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		h.log.Warn("on-channel-deleted webhook", "err", err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		h.log.Warn("on-channel-deleted webhook", "channels", len(batch), "err", err)
		return
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		h.log.Warn("on-channel-deleted webhook", "channels", len(batch), "status", resp.StatusCode)
	}
}

// close sends what is pending and waits for POSTs in flight.
func (h *webhook) close() {
	h.mu.Lock()
	h.closed = true
	t := h.timer
	h.mu.Unlock()
	if t != nil && t.Stop() {
		h.wg.Done()
		h.flush()
	}
	h.wg.Wait()
	h.client.CloseIdleConnections()
}
