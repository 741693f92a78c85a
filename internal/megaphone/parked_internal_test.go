package megaphone

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/protocol"
)

// TestShutdownRefusesWaitingPolls: polls taken over from net/http while
// every opening slot is taken are answered 503 (Retry-After, the JSON
// error body, Connection: close) as soon as shutdown begins, and the
// tracker's shutdown then finds them ended.
func TestShutdownRefusesWaitingPolls(t *testing.T) {
	tr := protocol.NewTracker(nil)
	h := &api{b: &Broker{m: newMetrics(nil)}, streams: tr, log: slog.New(slog.DiscardHandler), parkPolls: true, opening: make(chan struct{}, 1)}
	h.opening <- struct{}{} // the only slot is taken for the whole test
	mux := http.NewServeMux()
	mux.HandleFunc("GET /read/{address}", func(w http.ResponseWriter, r *http.Request) {
		if err := h.read(w, r); err != nil {
			h.fail(w, readRoute, err)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	const n = 3
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "GET /read/main.x%d.1 HTTP/1.1\r\nHost: gw\r\n\r\n", i); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		h.qmu.Lock()
		defer h.qmu.Unlock()
		if len(h.waiting) != n {
			return fmt.Errorf("%d polls waiting, want %d", len(h.waiting), n)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v (the waiting polls were not ended)", err)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("poll %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e httpx.ErrorBody
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!resp.Close || json.Unmarshal(body, &e) != nil || e.Code != httpx.CodeUnavailable {
			t.Errorf("poll %d: %d Retry-After %q close %v body %q", i, resp.StatusCode,
				resp.Header.Get("Retry-After"), resp.Close, body)
		}
	}
}
