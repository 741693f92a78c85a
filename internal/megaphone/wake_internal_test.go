package megaphone

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// TestSharedWakeups: with one subscription to every channel's wake-ups, a
// poll subscribes to nothing of its own, gets its channel's wake-ups and
// no other's, a wake-up nobody waits for is dropped, a poll that ended
// leaves no waiter behind (and does not remove its successor's), and a
// drop on the shared subscription makes every waiter read its stream.
func TestSharedWakeups(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := startWakeups(nc, slog.New(slog.DiscardHandler), newExistsCache(time.Second), true, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	subs := nc.NumSubscriptions()

	wake := func(id string) string {
		subj, err := subjects.MegaphoneWake(id)
		if err != nil {
			t.Fatal(err)
		}
		return subj
	}
	ws := make([]*waiter, 3)
	for i := range ws {
		id := fmt.Sprintf("chan%d", i)
		if ws[i], _, err = s.register(id, "ev."+id, false); err != nil {
			t.Fatal(err)
		}
		ws[i].take() // the first drain's read
	}
	if n := nc.NumSubscriptions(); n != subs {
		t.Fatalf("subscriptions: %d with 3 polls, %d before", n, subs)
	}
	if err := nc.Publish(wake("nobody"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(wake("chan1"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ws[1].wake:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up for chan1")
	}
	if _, fetch, _, _ := ws[1].take(); !fetch {
		t.Fatal("a wake-up without an event did not ask for a read")
	}
	for _, i := range []int{0, 2} {
		if ws[i].busy() {
			t.Fatalf("chan%d woken by another channel's wake-up", i)
		}
	}

	// A successor registered before its predecessor ended keeps its
	// wake-ups when the predecessor unregisters.
	next, _, err := s.register("chan2", "ev.chan2", false)
	if err != nil {
		t.Fatal(err)
	}
	next.take()
	s.unregister(ws[2], false)
	if err := nc.Publish(wake("chan2"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-next.wake:
	case <-time.After(5 * time.Second):
		t.Fatal("the successor lost its wake-ups")
	}
	s.unregister(next, false)
	s.mu.Lock()
	left := len(s.waiters)
	s.mu.Unlock()
	if left != 2 {
		t.Fatalf("%d waiters after two of four ended", left)
	}

	// Drops: a subscription into a one-slot channel stands in for the
	// shared one after the dispatcher's queue overflowed.
	full := make(chan *nats.Msg, 1)
	drop, err := nc.ChanSubscribe("drops", full)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := nc.Publish("drops", nil); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if n, _ := drop.Dropped(); n == 0 {
			return fmt.Errorf("nothing dropped yet")
		}
		return nil
	})
	s.mu.Lock()
	s.all = drop
	s.mu.Unlock()
	s.recoverDrops()
	for _, i := range []int{0, 1} {
		if _, fetch, _, _ := ws[i].take(); !fetch {
			t.Fatalf("chan%d: a dropped wake-up did not ask for a read", i)
		}
	}
	s.recoverDrops()
	if ws[0].busy() {
		t.Fatal("the same drops woke the readers twice")
	}
}
