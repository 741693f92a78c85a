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
	nc, s := sharedWakeups(t)
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
		var err error
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
	drop := dropping(t, nc)
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

// TestQuietWatch: under the shared subscription a poll that ended settled
// (or a channel created here) lets the next poll of its channel skip its
// first read, unless a wake-up of the channel came in between (to nobody,
// or queued on the poll that ended), the watch is older than quietTTL,
// wake-ups were dropped since, or the next poll does not ask to resume.
func TestQuietWatch(t *testing.T) {
	nc, s := sharedWakeups(t)
	open := func(id string, resume bool) (*waiter, bool) {
		t.Helper()
		w, quiet, err := s.register(id, "ev."+id, resume)
		if err != nil {
			t.Fatal(err)
		}
		if _, fetch, _, _ := w.take(); fetch == quiet {
			t.Fatalf("%s: quiet %v but read asked %v", id, quiet, fetch)
		}
		return w, quiet
	}
	watching := func(id string) bool {
		subj, _ := subjects.MegaphoneWake(id)
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.quiet[subj]
		return ok
	}

	s.watchQuiet("fresh")
	if _, quiet := open("fresh", true); !quiet {
		t.Fatal("a channel created here with no wake-up since is not quiet")
	}
	w, _ := open("a", false)
	s.unregister(w, true)
	if _, quiet := open("a", false); quiet {
		t.Fatal("a poll that does not resume skipped its read")
	}
	if watching("a") {
		t.Fatal("a poll left its channel's watch behind")
	}
	w, _ = open("a", true)
	s.unregister(w, false)
	if _, quiet := open("a", true); quiet {
		t.Fatal("a poll that ended unsettled left its channel quiet")
	}

	// A wake-up to nobody ends the watch.
	w, _ = open("b", false)
	s.unregister(w, true)
	wake, _ := subjects.MegaphoneWake("b")
	if err := nc.Publish(wake, []byte("1")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if watching("b") {
			return fmt.Errorf("b still watched after its wake-up")
		}
		return nil
	})
	if _, quiet := open("b", true); quiet {
		t.Fatal("a channel woken between polls is quiet")
	}

	// A wake-up queued on the poll that ended, not taken by a drain.
	w, _ = open("c", false)
	wake, _ = subjects.MegaphoneWake("c")
	if err := nc.Publish(wake, []byte("1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.wake:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up for c")
	}
	s.unregister(w, true)
	if _, quiet := open("c", true); quiet {
		t.Fatal("a wake-up left undelivered by the poll that ended was ignored")
	}

	// Too old.
	s.quietTTL = 0
	w, _ = open("d", false)
	s.unregister(w, true)
	if _, quiet := open("d", true); quiet {
		t.Fatal("a watch older than quietTTL was used")
	}
	s.quietTTL = time.Minute

	// Drops on the shared subscription since the watch began.
	w, _ = open("e", false)
	s.unregister(w, true)
	drop := dropping(t, nc)
	all := s.all
	s.mu.Lock()
	s.all = drop
	s.mu.Unlock()
	if _, quiet := open("e", true); quiet {
		t.Fatal("a watch broken by dropped wake-ups was used")
	}
	s.mu.Lock()
	s.all = all
	s.mu.Unlock()
}

// sharedWakeups starts wake-ups under one shared subscription (quiet
// watches kept a minute) on a fresh nats-server; both end with the test.
func sharedWakeups(t *testing.T) (*nats.Conn, *wakeups) {
	t.Helper()
	nc := natstest.Connect(t, natstest.RunServer(t, nil).URL())
	s, err := startWakeups(nc, slog.New(slog.DiscardHandler), newExistsCache(time.Second), true, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return nc, s
}

// dropping returns a subscription into a one-slot channel that has
// dropped messages: a stand-in for the shared one after the dispatcher's
// queue overflowed.
func dropping(t *testing.T, nc *nats.Conn) *nats.Subscription {
	t.Helper()
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
	return drop
}
