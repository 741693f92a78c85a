package pipe_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// opCounter counts the queue operations the gateways make: appends
// (publishes to the queue stream's subjects) and JetStream API requests
// (reads, deletes, purges).
type opCounter struct {
	appends, api atomic.Int64
}

func countOps(t *testing.T, natsURL string) *opCounter {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := &opCounter{}
	if _, err := nc.Subscribe("sb.pipe.>", func(m *nats.Msg) {
		if _, err := subjects.ParsePipeEntry(m.Subject); err == nil {
			c.appends.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("$JS.API.>", func(*nats.Msg) { c.api.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *opCounter) total() int64 { return c.appends.Load() + c.api.Load() }

// handOff runs one hand-off on a fresh channel: the consumer on gateway
// cg waits first (its entry seen), then the producer comes to pg.
func handOff(t *testing.T, c *opCounter, cg, pg string, name string) {
	t.Helper()
	ctx := context.Background()
	before := c.appends.Load()
	cons := consume(ctx, cg, "ops", name)
	natstest.Eventually(t, 10*time.Second, func() error {
		if c.appends.Load() == before {
			return fmt.Errorf("consumer not appended yet")
		}
		return nil
	})
	p := wait(t, produce(ctx, pg, "ops", name, []byte("body of "+name), "text/plain"))
	r := wait(t, cons)
	if p.status != http.StatusOK || r.status != http.StatusOK || string(r.body) != "body of "+name {
		t.Fatalf("%s: producer %d %s, consumer %d %q", name, p.status, p.body, r.status, r.body)
	}
}

// TestHandOffOperations checks the queue operations of the common
// hand-off on a fresh channel (see fastpath.go): 2 when both parties are
// on one gateway (the consumer's append, the deletion of its entry once
// the producer claimed it), 4 across gateways (the producer's guess of an
// empty channel is refused, then a read finds the consumer's entry alone,
// and the deletion). A little slack is left for the gateways' own
// periodic reads.
func TestHandOffOperations(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	gws := harness.StartN(t, 2, srv.URL(), nil)
	c := countOps(t, srv.URL())
	const n = 5
	for _, tc := range []struct {
		name   string
		cg, pg int
		want   int64
	}{{"local", 0, 0, 2}, {"remote", 0, 1, 4}} {
		start := c.total()
		for i := range n {
			handOff(t, c, gws[tc.cg].URL(), gws[tc.pg].URL(), fmt.Sprintf("%s-%d", tc.name, i))
		}
		got := c.total() - start
		t.Logf("%s: %d queue operations for %d hand-offs", tc.name, got, n)
		if got > tc.want*n+2 {
			t.Errorf("%s: %d queue operations for %d hand-offs, want about %d each", tc.name, got, n, tc.want)
		}
		// Nothing is left behind.
		st := map[string][]string{}
		if code := getJSON(t, gws[0].URL()+"/state", &st); code != http.StatusOK || len(st) != 0 {
			t.Errorf("%s: state %d %v, want empty", tc.name, code, st)
		}
	}
}

// TestStaleGuess: a gateway's guess of a channel's newest entry is its
// own last waiter, but another gateway appended behind it; the arrival's
// compare-and-set is refused and FIFO holds.
func TestStaleGuess(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx := context.Background()
	p1 := produce(ctx, e.url(0), "stale", "ch", []byte("p1"), "text/plain")
	e.awaitWaiting(t, "stale", "ch", subjects.PipeProducer, 1)
	p2 := produce(ctx, e.url(1), "stale", "ch", []byte("p2"), "text/plain")
	e.awaitWaiting(t, "stale", "ch", subjects.PipeProducer, 2)
	for i, want := range []string{"p1", "p2"} {
		r := wait(t, consume(ctx, e.url(0), "stale", "ch"))
		if r.status != http.StatusOK || string(r.body) != want {
			t.Fatalf("consumer %d got %d %q, want %s", i+1, r.status, r.body, want)
		}
	}
	for _, p := range []<-chan result{p1, p2} {
		if r := wait(t, p); r.status != http.StatusOK {
			t.Fatalf("producer: %d %s", r.status, strings.TrimSpace(string(r.body)))
		}
	}
}
