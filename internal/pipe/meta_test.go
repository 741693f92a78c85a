package pipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/protocol"
)

func TestMetaValidate(t *testing.T) {
	long := strings.Repeat("x", MaxHeaderValue+1)
	atMax := strings.Repeat("x", MaxHeaderValue)
	cases := []struct {
		name string
		m    Meta
		ok   bool
	}{
		{"plain", Meta{ContentType: "text/plain", Length: 5, Disposition: `attachment; filename="a b.txt"`, Piping: []string{"a", "b"}}, true},
		{"unknown length", Meta{ContentType: "text/plain", Length: -1}, true},
		{"values at the bound", Meta{ContentType: atMax, Length: -1, Disposition: atMax, Piping: slices.Repeat([]string{atMax}, MaxPipingValues)}, true},
		{"tab", Meta{Length: -1, Disposition: "attachment;\tfilename=a"}, true},
		{"utf-8", Meta{Length: -1, Disposition: "attachment; filename=é.txt"}, true},
		{"negative length", Meta{Length: -2}, false},
		{"long type", Meta{ContentType: long, Length: -1}, false},
		{"long disposition", Meta{Length: -1, Disposition: long}, false},
		{"long piping", Meta{Length: -1, Piping: []string{"ok", long}}, false},
		{"too many piping", Meta{Length: -1, Piping: make([]string, MaxPipingValues+1)}, false},
		{"CR", Meta{Length: -1, Disposition: "a\rb"}, false},
		{"LF", Meta{Length: -1, Disposition: "a\nSet-Cookie: x=y"}, false},
		{"CRLF in piping", Meta{Length: -1, Piping: []string{"a\r\nb"}}, false},
		{"CRLF in type", Meta{ContentType: "text/plain\r\nX: y", Length: -1}, false},
		{"NUL", Meta{Length: -1, Disposition: "a\x00"}, false},
		{"DEL", Meta{Length: -1, Piping: []string{"a\x7f"}}, false},
	}
	for _, c := range cases {
		err := c.m.validate()
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBadHeader)) {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// TestMetaClaimHeaders checks that Meta survives the claim headers
// between gateways, and that values breaking the bounds are dropped on
// arrival rather than passed on.
func TestMetaClaimHeaders(t *testing.T) {
	for _, m := range []Meta{
		{ContentType: "text/plain", Length: 0},
		{ContentType: "application/octet-stream", Length: -1},
		{ContentType: "video/mp4", Length: 10 << 30, Disposition: `attachment; filename="x.mp4"`, Piping: []string{"one", "two, three", " four"}},
	} {
		h := nats.Header{}
		m.setOn(h)
		got := metaFrom(h)
		if got.ContentType != m.ContentType || got.Length != m.Length || got.Disposition != m.Disposition || !slices.Equal(got.Piping, m.Piping) {
			t.Errorf("round trip: %+v → %+v", m, got)
		}
	}
	h := nats.Header{
		hdrContentType: {"text/plain\r\nX: y"},
		hdrLength:      {"-5"},
		hdrDisposition: {strings.Repeat("x", MaxHeaderValue+1)},
		hdrPiping:      slices.Repeat([]string{"ok", "bad\n"}, MaxPipingValues),
	}
	got := metaFrom(h)
	if got.ContentType != "application/octet-stream" || got.Length != -1 || got.Disposition != "" || len(got.Piping) != MaxPipingValues || slices.Contains(got.Piping, "bad\n") {
		t.Errorf("bad values kept: %+v", got)
	}
	// A gateway that predates the new headers sends only the type.
	if got := metaFrom(nats.Header{hdrContentType: {"text/csv"}}); got.ContentType != "text/csv" || got.Length != -1 {
		t.Errorf("old claim: %+v", got)
	}
}

func TestExactBody(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		n      int64
		wantOK bool
	}{
		{"exact", "hello", 5, true},
		{"empty", "", 0, true},
		{"one byte", "x", 1, true},
		{"short", "hell", 5, false},
		{"short by one", "hello", 6, false},
		{"empty but announced", "", 3, false},
		{"long", "hello!", 5, false},
		{"long by a lot", strings.Repeat("x", 100), 5, false},
		{"longer than zero", "x", 0, false},
	}
	for _, c := range cases {
		for _, wrap := range []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r },
			iotest.OneByteReader,
			iotest.DataErrReader, // EOF together with the last bytes
		} {
			got, err := io.ReadAll(newExactBody(wrap(strings.NewReader(c.body)), c.n))
			if c.wantOK {
				if err != nil || string(got) != c.body {
					t.Errorf("%s: %q %v", c.name, got, err)
				}
				continue
			}
			if !errors.Is(err, ErrLength) {
				t.Errorf("%s: err %v, want ErrLength", c.name, err)
			}
			// Never the whole announced length: the last byte is held
			// back until the end is seen.
			if int64(len(got)) >= c.n && c.n > 0 {
				t.Errorf("%s: passed on %d of %d announced bytes before failing", c.name, len(got), c.n)
			}
		}
	}
	if r := newExactBody(strings.NewReader("x"), -1); r == nil {
		t.Fatal("unknown length")
	}
	// Errors of the body pass through.
	boom := errors.New("boom")
	if _, err := io.ReadAll(newExactBody(iotest.ErrReader(boom), 5)); !errors.Is(err, boom) {
		t.Errorf("body error: %v", err)
	}
}

// recorder is an [Output] that keeps what it got.
type recorder struct {
	meta    Meta
	started bool
	buf     bytes.Buffer
	flushes int
}

func (o *recorder) Start(m Meta)                { o.meta, o.started = m, true }
func (o *recorder) Write(p []byte) (int, error) { return o.buf.Write(p) }
func (o *recorder) Flush() error                { o.flushes++; return nil }
func (o *recorder) Interrupt()                  {}
func (o *recorder) Resume()                     {}

// startHubs starts n hubs on one nats-server.
func startHubs(t *testing.T, n int) []*Hub {
	t.Helper()
	srv := natstest.RunServer(t, nil)
	var hubs []*Hub
	for range n {
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		h := NewHub(Config{}, protocol.Deps{NC: nc, JS: js, Logger: slog.New(slog.DiscardHandler)})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = h.Start(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		hubs = append(hubs, h)
	}
	return hubs
}

// TestSendChecksLength checks, on one hub and across two, that a body
// longer or shorter than its announced length fails both sides and the
// consumer never gets the announced number of bytes; that a small body
// found wrong before pairing ends the producer's wait; and that bad
// headers are refused before the producer waits.
func TestSendChecksLength(t *testing.T) {
	hubs := startHubs(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Larger than the prefetch, so the mismatch shows mid-transfer.
	const n = 4 * prefetchSize
	for i, c := range []struct {
		consumer, producer int
		size               int
	}{
		{0, 0, n + 1}, {0, 1, n + 1},
		{0, 0, n - 1}, {1, 0, n - 1},
	} {
		ch := Channel{"len", string(rune('a' + i))}
		got := make(chan error, 1)
		out := &recorder{}
		go func() { got <- hubs[c.consumer].Receive(ctx, ch, out) }()
		err := hubs[c.producer].Send(ctx, ch, Input{
			Body:      bytes.NewReader(make([]byte, c.size)),
			Meta:      Meta{ContentType: "text/plain", Length: n},
			Interrupt: func() {},
		})
		if !errors.Is(err, ErrLength) {
			t.Errorf("%d: producer: %v, want ErrLength", i, err)
		}
		rerr := <-got
		if rerr == nil || errors.Is(rerr, ErrClientGone) || !out.started || out.meta.Length != n {
			t.Errorf("%d: consumer: %v (started %v, meta %+v)", i, rerr, out.started, out.meta)
		}
		if out.buf.Len() >= n {
			t.Errorf("%d: consumer got %d bytes of %d announced", i, out.buf.Len(), n)
		}
	}
	for _, body := range []string{"hell", "hello!"} {
		err := hubs[1].Send(ctx, Channel{"len", "small"}, Input{
			Body:      strings.NewReader(body),
			Meta:      Meta{ContentType: "text/plain", Length: 5},
			Interrupt: func() {},
		})
		if !errors.Is(err, ErrLength) {
			t.Errorf("small body %q: %v, want ErrLength", body, err)
		}
	}
	err := hubs[0].Send(ctx, Channel{"len", "bad"}, Input{
		Body:      strings.NewReader("x"),
		Meta:      Meta{ContentType: "text/plain", Length: 1, Disposition: "a\r\nb"},
		Interrupt: func() {},
	})
	if !errors.Is(err, ErrBadHeader) {
		t.Fatalf("CR/LF header: %v", err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if st, err := hubs[1].State(ctx); err != nil || len(st) != 0 {
			return fmt.Errorf("producers left state behind: %v %v", st, err)
		}
		return nil
	})
}
