package pipe_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

func TestJSONRoundTrip(t *testing.T) {
	e := embedded(t, nil)
	ctx := context.Background()
	get := consume(ctx, e.url(0), "v1", "hello")
	post := produce(ctx, e.url(0), "v1", "hello", []byte(`{"greeting":"Bwah!"}`), "application/json")
	p, c := wait(t, post), wait(t, get)
	if p.err != nil || p.status != http.StatusOK || len(p.body) != 0 {
		t.Fatalf("producer: %d %q %v", p.status, p.body, p.err)
	}
	if c.err != nil || c.status != http.StatusOK || c.ct != "application/json" || string(c.body) != `{"greeting":"Bwah!"}` {
		t.Fatalf("consumer: %d %q %q %v", c.status, c.ct, c.body, c.err)
	}
	var namespaces []string
	if getJSON(t, e.url(0)+"/channels/namespaces", &namespaces); len(namespaces) != 0 {
		t.Fatalf("namespaces after the exchange: %v", namespaces)
	}
	if st := getJSON(t, e.url(0)+"/channels/a_great_ns", nil); st != http.StatusNotFound {
		t.Fatalf("unknown namespace: %d", st)
	}
}

func TestContentTypeDefaults(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx := context.Background()
	for i, ct := range []string{"", "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8"} {
		get := consume(ctx, e.url(i), "v1", "raw")
		post := produce(ctx, e.url(i+1), "v1", "raw", []byte("hello"), ct)
		p, c := wait(t, post), wait(t, get)
		if p.status != http.StatusOK || c.status != http.StatusOK {
			t.Fatalf("statuses %d %d (%v %v)", p.status, c.status, p.err, c.err)
		}
		if c.ct != "application/octet-stream" || string(c.body) != "hello" {
			t.Fatalf("content type %q → %q, body %q", ct, c.ct, c.body)
		}
	}
}

// TestListings checks that a waiting GET and a waiting POST each make
// their namespace and channel appear on every gateway, and that they
// vanish after the exchange.
func TestListings(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx := context.Background()
	for _, first := range []string{subjects.PipeConsumer, subjects.PipeProducer} {
		var waiter <-chan result
		if first == subjects.PipeConsumer {
			waiter = consume(ctx, e.url(0), "a_great_ns", "autovivify")
		} else {
			waiter = produce(ctx, e.url(0), "a_great_ns", "autovivify", []byte("some body"), "")
		}
		for g := range e.gws {
			natstest.Eventually(t, 20*time.Second, func() error {
				var ns, chans []string
				var st map[string][]string
				getJSON(t, e.url(g)+"/channels/namespaces", &ns)
				getJSON(t, e.url(g)+"/channels/a_great_ns", &chans)
				getJSON(t, e.url(g)+"/state", &st)
				if !slices.Equal(ns, []string{"a_great_ns"}) || !slices.Equal(chans, []string{"autovivify"}) ||
					!slices.Equal(st["a_great_ns"], []string{"autovivify"}) || len(st) != 1 {
					return fmt.Errorf("listings %v %v %v", ns, chans, st)
				}
				return nil
			})
		}
		var partner <-chan result
		if first == subjects.PipeConsumer {
			partner = produce(ctx, e.url(1), "a_great_ns", "autovivify", []byte("some body"), "")
		} else {
			partner = consume(ctx, e.url(1), "a_great_ns", "autovivify")
		}
		a, b := wait(t, waiter), wait(t, partner)
		if a.status != http.StatusOK || b.status != http.StatusOK {
			t.Fatalf("%s first: statuses %d %d", first, a.status, b.status)
		}
		for g := range e.gws {
			var ns []string
			var st map[string][]string
			if getJSON(t, e.url(g)+"/channels/namespaces", &ns); len(ns) != 0 {
				t.Fatalf("namespaces after exchange: %v", ns)
			}
			if getJSON(t, e.url(g)+"/state", &st); len(st) != 0 {
				t.Fatalf("state after exchange: %v", st)
			}
			if s := getJSON(t, e.url(g)+"/channels/a_great_ns", nil); s != http.StatusNotFound {
				t.Fatalf("channels after exchange: %d", s)
			}
		}
	}
}

func TestDelete(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx := context.Background()
	// Two consumers on one channel (one per gateway) and a producer on
	// another channel of the same namespace.
	c1 := consume(ctx, e.url(0), "ns", "one")
	e.awaitWaiting(t, "ns", "one", subjects.PipeConsumer, 1)
	c2 := consume(ctx, e.url(1), "ns", "one")
	p1 := produce(ctx, e.url(1), "ns", "two", []byte("x"), "")
	other := consume(ctx, e.url(0), "other", "one")
	e.awaitWaiting(t, "ns", "one", subjects.PipeConsumer, 2)
	e.awaitWaiting(t, "ns", "two", subjects.PipeProducer, 1)
	e.awaitWaiting(t, "other", "one", subjects.PipeConsumer, 1)

	if r := do(ctx, http.MethodDelete, chanURL(e.url(1), "ns", "one"), nil, ""); r.status != http.StatusOK {
		t.Fatalf("DELETE channel: %d %s", r.status, r.body)
	}
	for _, ch := range []<-chan result{c1, c2} {
		if r := wait(t, ch); r.status != http.StatusGone || errorCode(t, r) != "GONE" {
			t.Fatalf("waiter of deleted channel: %d %s", r.status, r.body)
		}
	}
	e.awaitWaiting(t, "ns", "one", subjects.PipeConsumer, 0)
	if n := e.waiting(t, "ns", "two", subjects.PipeProducer); n != 1 {
		t.Fatalf("other channel lost its producer: %d", n)
	}

	if r := do(ctx, http.MethodDelete, e.url(0)+"/channels/ns", nil, ""); r.status != http.StatusOK {
		t.Fatalf("DELETE namespace: %d %s", r.status, r.body)
	}
	if r := wait(t, p1); r.status != http.StatusGone || errorCode(t, r) != "GONE" {
		t.Fatalf("waiter of deleted namespace: %d %s", r.status, r.body)
	}
	// Nobody waits there any more: still 200.
	for _, u := range []string{e.url(0) + "/channels/ns", chanURL(e.url(1), "ns", "one"), e.url(0) + "/channels/nobody"} {
		if r := do(ctx, http.MethodDelete, u, nil, ""); r.status != http.StatusOK {
			t.Fatalf("DELETE %s: %d", u, r.status)
		}
	}
	// The other namespace is untouched and still pairs.
	p := wait(t, produce(ctx, e.url(1), "other", "one", []byte("still here"), "text/plain"))
	if r := wait(t, other); p.status != http.StatusOK || r.status != http.StatusOK || string(r.body) != "still here" {
		t.Fatalf("untouched namespace: %d %d %q", p.status, r.status, r.body)
	}
}

// TestNamespacesLiteralRoute checks that /channels/namespaces is the
// listing while a namespace called "namespaces" still works.
func TestNamespacesLiteralRoute(t *testing.T) {
	e := embedded(t, nil)
	ctx := context.Background()
	c := consume(ctx, e.url(0), "namespaces", "x")
	e.awaitWaiting(t, "namespaces", "x", subjects.PipeConsumer, 1)
	var ns []string
	if getJSON(t, e.url(0)+"/channels/namespaces", &ns); !slices.Equal(ns, []string{"namespaces"}) {
		t.Fatalf("namespaces: %v", ns)
	}
	p := wait(t, produce(ctx, e.url(0), "namespaces", "x", []byte("ok"), ""))
	if r := wait(t, c); p.status != http.StatusOK || string(r.body) != "ok" {
		t.Fatalf("namespace called namespaces: %d %q", p.status, r.body)
	}
	if r := do(ctx, http.MethodDelete, e.url(0)+"/channels/namespaces", nil, ""); r.status != http.StatusOK {
		t.Fatalf("DELETE /channels/namespaces: %d %s", r.status, r.body)
	}
}

func TestTimeout(t *testing.T) {
	e := twoOnOneServer(t, func(c *gateway.Config) { c.Pipe.Timeout = 300 * time.Millisecond })
	ctx := context.Background()
	for _, ch := range []<-chan result{
		consume(ctx, e.url(0), "ns", "c"),
		produce(ctx, e.url(1), "ns", "p", []byte("body"), ""),
	} {
		r := wait(t, ch)
		if r.status != http.StatusRequestTimeout || errorCode(t, r) != "TIMEOUT" {
			t.Fatalf("timeout: %d %s", r.status, r.body)
		}
	}
	e.awaitWaiting(t, "ns", "c", subjects.PipeConsumer, 0)
	e.awaitWaiting(t, "ns", "p", subjects.PipeProducer, 0)
	// A pair that meets in time is not affected.
	c := consume(ctx, e.url(0), "ns", "pair")
	p := wait(t, produce(ctx, e.url(1), "ns", "pair", []byte("in time"), ""))
	if r := wait(t, c); p.status != http.StatusOK || string(r.body) != "in time" {
		t.Fatalf("pair within the timeout: %d %d %q", p.status, r.status, r.body)
	}
}

// TestListingsAfterLocalHandOff: parties paired on one gateway are
// answered before the deletion of the served entry is acknowledged, yet a
// listing on any gateway right after both answers never shows them.
func TestListingsAfterLocalHandOff(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx := context.Background()
	for i := range 20 {
		name := fmt.Sprintf("local-%d", i)
		var first, second <-chan result
		if i%2 == 0 {
			first = consume(ctx, e.url(0), "lists", name)
			e.awaitWaiting(t, "lists", name, subjects.PipeConsumer, 1)
			second = produce(ctx, e.url(0), "lists", name, []byte("body"), "")
		} else {
			first = produce(ctx, e.url(0), "lists", name, []byte("body"), "")
			e.awaitWaiting(t, "lists", name, subjects.PipeProducer, 1)
			second = consume(ctx, e.url(0), "lists", name)
		}
		a, b := wait(t, first), wait(t, second)
		if a.status != http.StatusOK || b.status != http.StatusOK {
			t.Fatalf("%s: statuses %d %d", name, a.status, b.status)
		}
		g := i % len(e.gws)
		var st map[string][]string
		if getJSON(t, e.url(g)+"/state", &st); len(st) != 0 {
			t.Fatalf("%s: state on gateway %d after the hand-off: %v", name, g, st)
		}
	}
}
