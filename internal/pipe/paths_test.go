package pipe_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/subjects"
)

// TestTrailingSlash checks that a trailing slash is ignored on every
// route, across gateways: /channels/ns/x/ is channel x (producer,
// consumer, DELETE) and /channels/ns/ the namespace's listing.
func TestTrailingSlash(t *testing.T) {
	e := twoOnOneServer(t, nil)
	ctx := context.Background()

	// Consumer with a slash, producer without, on the other gateway.
	get := async(ctx, http.MethodGet, e.url(0)+"/channels/ts/a/", nil, "")
	e.awaitWaiting(t, "ts", "a", subjects.PipeConsumer, 1)
	for g := range e.gws {
		var chans, ns []string
		var st map[string][]string
		if s := getJSON(t, e.url(g)+"/channels/ts/", &chans); s != http.StatusOK || !slices.Equal(chans, []string{"a"}) {
			t.Fatalf("GET /channels/ts/: %d %v", s, chans)
		}
		if s := getJSON(t, e.url(g)+"/channels/namespaces/", &ns); s != http.StatusOK || !slices.Equal(ns, []string{"ts"}) {
			t.Fatalf("GET /channels/namespaces/: %d %v", s, ns)
		}
		if s := getJSON(t, e.url(g)+"/state/", &st); s != http.StatusOK || !slices.Equal(st["ts"], []string{"a"}) {
			t.Fatalf("GET /state/: %d %v", s, st)
		}
	}
	p := wait(t, produce(ctx, e.url(1), "ts", "a", []byte("one"), ""))
	if r := wait(t, get); p.status != http.StatusOK || r.status != http.StatusOK || string(r.body) != "one" {
		t.Fatalf("consumer with a slash: %d %d %q", p.status, r.status, r.body)
	}

	// Producers with a slash (POST and PUT), consumers without.
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		post := async(ctx, method, e.url(1)+"/channels/ts/b/", strings.NewReader(method), "text/plain")
		e.awaitWaiting(t, "ts", "b", subjects.PipeProducer, 1)
		r := wait(t, consume(ctx, e.url(0), "ts", "b"))
		if p := wait(t, post); p.status != http.StatusOK || r.status != http.StatusOK || string(r.body) != method {
			t.Fatalf("%s with a slash: %d %d %q", method, p.status, r.status, r.body)
		}
	}

	// DELETE with a slash, of a channel and of a namespace.
	c1 := consume(ctx, e.url(0), "ts", "d")
	c2 := consume(ctx, e.url(1), "ts2", "e")
	e.awaitWaiting(t, "ts", "d", subjects.PipeConsumer, 1)
	e.awaitWaiting(t, "ts2", "e", subjects.PipeConsumer, 1)
	for u, c := range map[string]<-chan result{
		e.url(1) + "/channels/ts/d/": c1,
		e.url(0) + "/channels/ts2/":  c2,
	} {
		if r := do(ctx, http.MethodDelete, u, nil, ""); r.status != http.StatusOK {
			t.Fatalf("DELETE %s: %d %s", u, r.status, r.body)
		}
		if r := wait(t, c); r.status != http.StatusGone || errorCode(t, r) != "GONE" {
			t.Fatalf("waiter after DELETE %s: %d %s", u, r.status, r.body)
		}
	}
	// Nobody waits in ts any more: the listing is 404 NOT_FOUND, with a
	// slash as without.
	for _, u := range []string{e.url(0) + "/channels/ts/", e.url(1) + "/channels/ts"} {
		r := do(ctx, http.MethodGet, u, nil, "")
		if r.status != http.StatusNotFound || errorCode(t, r) != "NOT_FOUND" {
			t.Fatalf("GET %s: %d %s", u, r.status, r.body)
		}
	}
}
