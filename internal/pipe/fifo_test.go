package pipe_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/switchboard/switchboard/internal/subjects"
)

// fifo checks arrival order across gateways both ways: p1..p4 wait (on
// alternating gateways), then c1..c4 arrive one after another and each ci
// gets pi's body; then consumers wait first and producers arrive.
func fifo(t *testing.T, e *env) {
	ctx := context.Background()
	const n = 4
	prods := make([]<-chan result, n)
	for i := range n {
		prods[i] = produce(ctx, e.url(i), "fifo", "ch", fmt.Appendf(nil, "p%d", i+1), "text/plain")
		e.awaitWaiting(t, "fifo", "ch", subjects.PipeProducer, i+1)
	}
	for i := range n {
		c := wait(t, consume(ctx, e.url(i+1), "fifo", "ch"))
		if c.status != http.StatusOK || string(c.body) != fmt.Sprintf("p%d", i+1) {
			t.Fatalf("consumer %d got %d %q, want p%d", i+1, c.status, c.body, i+1)
		}
		if p := wait(t, prods[i]); p.status != http.StatusOK {
			t.Fatalf("producer %d: %d %s", i+1, p.status, p.body)
		}
		e.awaitWaiting(t, "fifo", "ch", subjects.PipeProducer, n-i-1)
	}

	cons := make([]<-chan result, n)
	for i := range n {
		cons[i] = consume(ctx, e.url(i), "fifo", "ch")
		e.awaitWaiting(t, "fifo", "ch", subjects.PipeConsumer, i+1)
	}
	for i := range n {
		p := wait(t, produce(ctx, e.url(i+1), "fifo", "ch", fmt.Appendf(nil, "q%d", i+1), ""))
		if p.status != http.StatusOK {
			t.Fatalf("producer %d: %d %s", i+1, p.status, p.body)
		}
		if c := wait(t, cons[i]); c.status != http.StatusOK || string(c.body) != fmt.Sprintf("q%d", i+1) {
			t.Fatalf("consumer %d got %d %q, want q%d", i+1, c.status, c.body, i+1)
		}
	}
}

func TestFIFOTwoGateways(t *testing.T) { fifo(t, twoOnOneServer(t, nil)) }

func TestFIFOCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	fifo(t, twoOnCluster(t, nil))
}

// TestConcurrentArrivals pairs many parties arriving at once on both
// gateways: every body is delivered exactly once, nobody is left over.
func TestConcurrentArrivals(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx := context.Background()
	const n = 24
	var prods, cons []<-chan result
	for i := range n {
		prods = append(prods, produce(ctx, e.url(i), "burst", "ch", fmt.Appendf(nil, "b%d", i), ""))
		cons = append(cons, consume(ctx, e.url(i+1), "burst", "ch"))
	}
	got := map[string]bool{}
	for i := range n {
		if p := wait(t, prods[i]); p.status != http.StatusOK {
			t.Fatalf("producer %d: %d %s %v", i, p.status, p.body, p.err)
		}
		c := wait(t, cons[i])
		if c.status != http.StatusOK || got[string(c.body)] {
			t.Fatalf("consumer %d: %d %q (dup %v)", i, c.status, c.body, got[string(c.body)])
		}
		got[string(c.body)] = true
	}
	e.awaitWaiting(t, "burst", "ch", subjects.PipeProducer, 0)
	e.awaitWaiting(t, "burst", "ch", subjects.PipeConsumer, 0)
}

// TestChannelsIndependent checks that names made of subject syntax are
// separate channels and that a busy channel does not hold up another.
func TestChannelsIndependent(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx := context.Background()
	names := []string{"a.b", "a.*", "a.>", "*", ">", "a b", "a/b", "é"}
	var cons []<-chan result
	for i, name := range names {
		cons = append(cons, consume(ctx, e.url(i), "ns.x", name))
		e.awaitWaiting(t, "ns.x", name, subjects.PipeConsumer, 1)
	}
	for i := len(names) - 1; i >= 0; i-- {
		if p := wait(t, produce(ctx, e.url(i+1), "ns.x", names[i], []byte(names[i]), "")); p.status != http.StatusOK {
			t.Fatalf("producer %q: %d %s", names[i], p.status, p.body)
		}
		if c := wait(t, cons[i]); c.status != http.StatusOK || string(c.body) != names[i] {
			t.Fatalf("channel %q got %d %q", names[i], c.status, c.body)
		}
	}
}

// TestFIFOStaleGuess walks the fast path's guess where it is stale: a
// gateway's guess of a channel's newest entry is its own last party, and
// an alone entry is claimed on it without the marker. p1 waits alone on
// gateway 0, p2 behind it on gateway 1, so gateway 0 still guesses p1 is
// the only entry: its consumers must get p1 then p2 (the second one's
// guess is "empty", refused, then read). The same with the roles swapped.
func TestFIFOStaleGuess(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx := context.Background()
	for _, consumersFirst := range []bool{false, true} {
		first, second := subjects.PipeProducer, subjects.PipeConsumer
		if consumersFirst {
			first, second = second, first
		}
		waitOn := func(gw, i int) <-chan result {
			if consumersFirst {
				return consume(ctx, e.url(gw), "stale", "ch")
			}
			return produce(ctx, e.url(gw), "stale", "ch", fmt.Appendf(nil, "w%d", i), "")
		}
		arriveOn := func(gw, i int) <-chan result {
			if consumersFirst {
				return produce(ctx, e.url(gw), "stale", "ch", fmt.Appendf(nil, "a%d", i), "")
			}
			return consume(ctx, e.url(gw), "stale", "ch")
		}
		w1 := waitOn(0, 1)
		e.awaitWaiting(t, "stale", "ch", first, 1)
		w2 := waitOn(1, 2)
		e.awaitWaiting(t, "stale", "ch", first, 2)
		for i, w := range []<-chan result{w1, w2} {
			a := wait(t, arriveOn(0, i+1))
			r := wait(t, w)
			prod, cons := r, a
			want := fmt.Sprintf("w%d", i+1)
			if consumersFirst {
				prod, cons = a, r
				want = fmt.Sprintf("a%d", i+1)
			}
			if prod.status != http.StatusOK || cons.status != http.StatusOK || string(cons.body) != want {
				t.Fatalf("consumers first %v, hand-off %d: producer %d %s, consumer %d %q, want %q",
					consumersFirst, i+1, prod.status, prod.body, cons.status, cons.body, want)
			}
			e.awaitWaiting(t, "stale", "ch", first, 1-i)
		}
		e.awaitWaiting(t, "stale", "ch", second, 0)
	}
}
