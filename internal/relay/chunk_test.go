package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/relay"
	"github.com/switchboard/switchboard/internal/subjects"
)

// TestRequestBodyChunks uploads a streamed body through a caller inside
// the NATS server's process and through one on a TCP connection: the
// in-process caller's data messages each fit in one read of the server
// (64 KiB with protocol line and headers), the TCP caller's are as large
// as its reads; both bodies arrive byte-exact.
func TestRequestBodyChunks(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		_, _ = io.Copy(h, r.Body)
		_, _ = io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
	}))
	defer target.Close()
	srv := natstest.RunServer(t, nil)
	prefix, _ := subjects.RelayInbox("u")
	anc, err := nats.Connect(srv.URL(), nats.CustomInboxPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	s, err := relay.NewServer(anc, relay.ServerConfig{Upstream: "u", Target: target.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()

	body := make([]byte, 8<<20+77)
	_, _ = rand.Read(body)
	sum := sha256.Sum256(body)

	// A spy on every relay subject records the largest stream data
	// message (those carry natsio's sequence header).
	spy, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	var mu sync.Mutex
	largest, seen := 0, 0
	all := make(chan struct{}, 1) // seen reached the body's size
	sub, err := spy.Subscribe("sb.relay.>", func(m *nats.Msg) {
		if m.Header.Get("Sb-Seq") == "" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		largest = max(largest, len(m.Data))
		if seen += len(m.Data); len(m.Data) > 0 && seen == len(body) {
			all <- struct{}{}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}

	upload := func(t *testing.T, cnc *nats.Conn) int {
		t.Helper()
		mu.Lock()
		largest, seen = 0, 0
		mu.Unlock()
		c := relay.NewClient(cnc, relay.Config{}, nil, nil)
		defer c.Close()
		resp, err := c.Do(context.Background(), "u", &relay.Request{
			Method: "POST", Path: "/", Header: http.Header{},
			Body: struct{ io.Reader }{bytes.NewReader(body)}, ContentLength: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || string(got) != hex.EncodeToString(sum[:]) {
			t.Fatalf("body relayed wrong: %q, %v", got, err)
		}
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			t.Fatal("the spy did not see the whole body")
		}
		mu.Lock()
		defer mu.Unlock()
		return largest
	}

	t.Run("in-process", func(t *testing.T) {
		cnc, err := nats.Connect("", nats.InProcessServer(srv.Server))
		if err != nil {
			t.Fatal(err)
		}
		defer cnc.Close()
		if n := upload(t, cnc); n <= 32<<10 || n > 63<<10 {
			t.Fatalf("largest data message %d bytes, want 32 KiB < n <= 63 KiB", n)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		cnc, err := nats.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer cnc.Close()
		if n := upload(t, cnc); n <= 64<<10 {
			t.Fatalf("largest data message %d bytes, want more than 64 KiB", n)
		}
	})
}
