package pipe_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/pipe"
	"github.com/switchboard/switchboard/internal/subjects"
)

// pairing is where a producer and its consumer connect and who comes
// first; it covers every way a producer's headers travel: in a claim and
// in a claim's answer, between gateways and on one gateway.
type pairing struct {
	name             string
	producer, consum int
	producerFirst    bool
}

var pairings = []pairing{
	{"cross/producer-first", 0, 1, true},
	{"cross/consumer-first", 0, 1, false},
	{"local/producer-first", 1, 1, true},
	{"local/consumer-first", 1, 1, false},
}

// run pairs a producer (hdr, body) with a consumer on ns/name and
// returns both results.
func (pr pairing) run(t *testing.T, e *env, ns, name string, body io.Reader, hdr http.Header) (p, c result) {
	t.Helper()
	ctx := context.Background()
	var post, get <-chan result
	send := func() <-chan result {
		return asyncWith(ctx, http.MethodPost, chanURL(e.url(pr.producer), ns, name), body, hdr)
	}
	if pr.producerFirst {
		post = send()
		e.awaitWaiting(t, ns, name, subjects.PipeProducer, 1)
		get = consume(ctx, e.url(pr.consum), ns, name)
	} else {
		get = consume(ctx, e.url(pr.consum), ns, name)
		e.awaitWaiting(t, ns, name, subjects.PipeConsumer, 1)
		post = send()
	}
	p, c = wait(t, post), wait(t, get)
	if p.err != nil || p.status != http.StatusOK {
		t.Fatalf("producer: %d %s %v", p.status, p.body, p.err)
	}
	if c.err != nil || c.status != http.StatusOK {
		t.Fatalf("consumer: %d %s %v", c.status, c.body, c.err)
	}
	return p, c
}

// TestHeadersPassThrough checks that Content-Type, Content-Length,
// Content-Disposition and every X-Piping value reach the consumer, and
// nothing else of the producer's request.
func TestHeadersPassThrough(t *testing.T) {
	e := twoOnOneServer(t, nil)
	hdr := http.Header{
		"Content-Type":        {"text/csv; charset=utf-8"},
		"Content-Disposition": {`attachment; filename="report 1.csv"; filename*=UTF-8''r%C3%A9port.csv`},
		"X-Piping":            {"first", "second, with a comma"},
		"X-Other":             {"stays here"},
		"Cache-Control":       {"no-store"},
	}
	body := []byte("a,b\n1,2\n")
	for _, pr := range pairings {
		t.Run(pr.name, func(t *testing.T) {
			_, c := pr.run(t, e, "hdr", strings.ReplaceAll(pr.name, "/", "-"), bytes.NewReader(body), hdr)
			if !bytes.Equal(c.body, body) || c.ct != hdr.Get("Content-Type") {
				t.Errorf("body %q type %q", c.body, c.ct)
			}
			if c.length != int64(len(body)) || len(c.te) != 0 {
				t.Errorf("Content-Length %d, transfer encoding %v; want %d, none", c.length, c.te, len(body))
			}
			if got := c.header.Get("Content-Disposition"); got != hdr.Get("Content-Disposition") {
				t.Errorf("Content-Disposition %q", got)
			}
			if got := c.header.Values("X-Piping"); !slices.Equal(got, hdr["X-Piping"]) {
				t.Errorf("X-Piping %q", got)
			}
			if c.header.Get("X-Other") != "" || c.header.Get("Cache-Control") != "" {
				t.Errorf("other producer headers passed: %v", c.header)
			}
		})
	}
}

// TestContentLength checks that a 10 MiB upload with a length arrives
// with the same Content-Length, an empty one with 0, and one of unknown
// length chunked, across gateways and on one gateway.
func TestContentLength(t *testing.T) {
	e := twoOnOneServer(t, nil)
	big, err := io.ReadAll(newPatternReader(10 << 20))
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range []pairing{pairings[0], pairings[3]} {
		t.Run(pr.name, func(t *testing.T) {
			name := strings.ReplaceAll(pr.name, "/", "-")
			_, c := pr.run(t, e, "len", name+"-big", bytes.NewReader(big), nil)
			if c.length != int64(len(big)) || len(c.te) != 0 || !bytes.Equal(c.body, big) {
				t.Errorf("10 MiB: Content-Length %d, transfer encoding %v, %d bytes (equal %v)",
					c.length, c.te, len(c.body), bytes.Equal(c.body, big))
			}
			_, c = pr.run(t, e, "len", name+"-empty", http.NoBody, nil)
			if c.length != 0 || len(c.te) != 0 || len(c.body) != 0 {
				t.Errorf("empty: Content-Length %d, transfer encoding %v, %d bytes", c.length, c.te, len(c.body))
			}
			// A reader of unknown size: the client sends it chunked.
			_, c = pr.run(t, e, "len", name+"-chunked", io.MultiReader(bytes.NewReader(big[:1<<20])), nil)
			if c.length != -1 || !slices.Equal(c.te, []string{"chunked"}) || !bytes.Equal(c.body, big[:1<<20]) {
				t.Errorf("unknown length: Content-Length %d, transfer encoding %v, %d bytes", c.length, c.te, len(c.body))
			}
		})
	}
}

// TestProducerShorterThanLength checks that a producer whose body ends
// before its Content-Length cuts the consumer's response: the consumer
// was told the length and never sees a clean short response.
func TestProducerShorterThanLength(t *testing.T) {
	e := twoOnOneServer(t, nil)
	for i, pr := range []pairing{pairings[1], pairings[3]} {
		name := fmt.Sprintf("short%d", i)
		get := startConsumer(t, e.url(pr.consum), "len", name)
		e.awaitWaiting(t, "len", name, subjects.PipeConsumer, 1)
		conn, err := net.Dial("tcp", e.gws[pr.producer].Addr())
		if err != nil {
			t.Fatal(err)
		}
		head := "POST /channels/len/" + name + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
		if _, err := io.WriteString(conn, head+strings.Repeat("x", 500)); err != nil {
			t.Fatal(err)
		}
		r := <-get // paired: the head arrives before the body
		if r.err != nil || r.resp.StatusCode != http.StatusOK || r.resp.ContentLength != 1000 {
			t.Fatalf("%s: consumer %v %+v", pr.name, r.err, r.resp)
		}
		conn.Close()
		b, err := io.ReadAll(r.resp.Body)
		r.resp.Body.Close()
		if err == nil {
			t.Fatalf("%s: consumer saw a clean end after %d bytes", pr.name, len(b))
		}
		e.awaitWaiting(t, "len", name, subjects.PipeProducer, 0)
	}
}

// TestHeaderLimits checks the bounds of the headers that pass: values of
// up to 1 KiB and 16 X-Piping values pass between gateways; longer
// values, more values and CR/LF are refused with 400 before the producer
// waits.
func TestHeaderLimits(t *testing.T) {
	e := twoOnOneServer(t, nil)
	kib := strings.Repeat("k", pipe.MaxHeaderValue)
	hdr := http.Header{
		"Content-Type":        {"text/plain; x=" + kib[:pipe.MaxHeaderValue-len("text/plain; x=")]},
		"Content-Disposition": {kib},
		"X-Piping":            slices.Repeat([]string{kib}, pipe.MaxPipingValues),
	}
	_, c := pairings[0].run(t, e, "lim", "max", strings.NewReader("ok"), hdr)
	if c.ct != hdr.Get("Content-Type") || c.header.Get("Content-Disposition") != kib || !slices.Equal(c.header.Values("X-Piping"), hdr["X-Piping"]) {
		t.Fatalf("values at the bounds did not pass: %v", c.header)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, h := range map[string]http.Header{
		"long type":        {"Content-Type": {"text/plain; x=" + kib}},
		"long disposition": {"Content-Disposition": {kib + "k"}},
		"long piping":      {"X-Piping": {"ok", kib + "k"}},
		"many piping":      {"X-Piping": slices.Repeat([]string{"v"}, pipe.MaxPipingValues+1)},
	} {
		r := doWith(ctx, http.MethodPost, chanURL(e.url(0), "lim", "x"), strings.NewReader("body"), h)
		if r.err != nil || r.status != http.StatusBadRequest || errorCode(t, r) != "BAD_REQUEST" {
			t.Errorf("%s: %d %s %v, want 400 BAD_REQUEST", name, r.status, r.body, r.err)
		}
	}
	// net/http refuses a CR in a value before the pipe sees it (and a
	// bare LF ends the line); the pipe checks again for every transport
	// and for values from other gateways (TestMetaValidate).
	for _, v := range []string{"a\rb", "attachment\r; x=y"} {
		req := "POST /channels/lim/x HTTP/1.1\r\nHost: x\r\nContent-Disposition: " + v + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
		if st := rawStatus(t, e.gws[1].Addr(), req); st != http.StatusBadRequest {
			t.Errorf("CR in Content-Disposition %q: %d, want 400", v, st)
		}
	}
	if n := e.waiting(t, "lim", "x", subjects.PipeProducer); n != 0 {
		t.Fatalf("%d refused producers wait", n)
	}
}
