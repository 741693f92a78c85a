package megaphone

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natstest"
)

// TestAckSlots: a publish gets its own reply through a reused slot; a
// publish that timed out gives its slot up, so its late reply never
// reaches a later publish; no responders is nats.ErrNoResponders; past
// maxAckSlots in use a publish is a plain request; many publishes at once
// each get their own reply; close leaves nothing subscribed.
func TestAckSlots(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The responder echoes; "late.*" answers only when released, and
	// then with what it was asked.
	release := make(chan struct{})
	echo, err := nc.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = echo.Unsubscribe() }()
	late, err := nc.Subscribe("late", func(m *nats.Msg) {
		go func() {
			<-release
			_ = m.Respond(m.Data)
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = late.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	subs := func() int { return nc.NumSubscriptions() }
	base := subs()

	s := newAckSlots(nc)
	for i := range 3 {
		m, err := s.request("echo", []byte{byte('a' + i)}, 5*time.Second)
		if err != nil || string(m.Data) != string([]byte{byte('a' + i)}) {
			t.Fatalf("request %d: %v %v", i, m, err)
		}
	}
	if len(s.free) != 1 || s.inUse != 0 || subs() != base+1 {
		t.Fatalf("after 3 requests: %d free, %d in use, %d subscriptions (want 1, 0, %d)", len(s.free), s.inUse, subs(), base+1)
	}

	// A timed-out publish gives its slot up; its reply, released later,
	// must not answer the next publish.
	if _, err := s.request("late", []byte("stale"), 50*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("late request: %v, want timeout", err)
	}
	if len(s.free) != 0 || s.inUse != 0 || subs() != base {
		t.Fatalf("after a timeout: %d free, %d in use, %d subscriptions (want 0, 0, %d)", len(s.free), s.inUse, subs(), base)
	}
	close(release)
	for i := range 20 {
		m, err := s.request("echo", []byte("fresh"), 5*time.Second)
		if err != nil || string(m.Data) != "fresh" {
			t.Fatalf("request %d after a timeout: %q %v", i, m.Data, err)
		}
	}

	if _, err := s.request("nobody", []byte("x"), 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request without responders: %v, want nats.ErrNoResponders", err)
	}

	// Past maxAckSlots in use: a plain request (nats.go's shared reply
	// subscription), no slot taken.
	s.mu.Lock()
	s.inUse = maxAckSlots
	free := len(s.free)
	s.mu.Unlock()
	if m, err := s.request("echo", []byte("plain"), 5*time.Second); err != nil || string(m.Data) != "plain" {
		t.Fatalf("request past the bound: %v %v", m, err)
	}
	s.mu.Lock()
	if s.inUse != maxAckSlots || len(s.free) != free {
		t.Fatalf("request past the bound took a slot: %d in use, %d free", s.inUse, len(s.free))
	}
	s.inUse = 0
	s.mu.Unlock()
	base = subs() - len(s.free) // now with nats.go's reply subscription

	const workers, each = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				want := []byte{byte(w), byte(i)}
				m, err := s.request("echo", want, 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				if string(m.Data) != string(want) {
					errs <- errors.New("a reply reached another publish")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(s.free) > workers || s.inUse != 0 {
		t.Fatalf("after concurrent requests: %d free (at most %d), %d in use", len(s.free), workers, s.inUse)
	}

	s.close()
	if subs() != base {
		t.Fatalf("after close: %d subscriptions, want %d", subs(), base)
	}
	if m, err := s.request("echo", []byte("closed"), 5*time.Second); err != nil || string(m.Data) != "closed" {
		t.Fatalf("request after close: %v %v", m, err)
	}
	if subs() != base {
		t.Fatalf("a request after close kept a subscription: %d, want %d", subs(), base)
	}
}

// BenchmarkAckSlots compares a publish acknowledged through a reused
// slot with nats.go's request (one shared reply subscription), against
// a responder on the same server, 16 publishers at once.
func BenchmarkAckSlots(b *testing.B) {
	srv := natstest.RunServer(b, nil)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	rc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	ack := []byte(`{"stream":"S","seq":1}`)
	if _, err := rc.Subscribe("ack", func(m *nats.Msg) { _ = m.Respond(ack) }); err != nil {
		b.Fatal(err)
	}
	if err := rc.Flush(); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 200)
	s := newAckSlots(nc)
	defer s.close()
	for _, tc := range []struct {
		name string
		req  func() (*nats.Msg, error)
	}{
		{"slots", func() (*nats.Msg, error) { return s.request("ack", data, 5*time.Second) }},
		{"nats.Request", func() (*nats.Msg, error) { return nc.Request("ack", data, 5*time.Second) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8) // 16 publishers on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tc.req(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
