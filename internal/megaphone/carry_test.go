package megaphone_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/megaphone"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// sseEvent is one SSE message: its id (the event's stream sequence) and
// the stored event.
type sseEvent struct {
	seq  uint64
	data string
}

// openSSE starts an SSE poll of addr (retrying while the channel is busy)
// and returns its events as they arrive.
func openSSE(t *testing.T, base, addr string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var resp *http.Response
	natstest.Eventually(t, 10*time.Second, func() error {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/read/"+addr, nil)
		req.Header.Set("Accept", "text/event-stream")
		var err error
		if resp, err = client.Do(req); err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			return fmt.Errorf("read = %d", resp.StatusCode)
		}
		return nil
	})
	out := make(chan sseEvent, 1000)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var id uint64
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				id, _ = strconv.ParseUint(v, 10, 64)
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				out <- sseEvent{seq: id, data: v}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		for range out {
		}
	})
	return out
}

// nextSSE returns the next event of an SSE poll.
func nextSSE(t *testing.T, evs <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-evs:
		if !ok {
			t.Fatal("poll ended")
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no event within 15s")
	}
	return sseEvent{}
}

// eventStream returns the test's handle on the event stream of the
// channel at consumer address addr, and the channel's event and wake-up
// subjects.
func eventStream(t *testing.T, natsURL, addr string) (*nats.Conn, jetstream.Stream, string, string) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	id, k := strings.Split(addr, ".")[1], harness.Partitions()
	s, err := js.Stream(context.Background(), subjects.MegaphoneStreamOf(subjects.MegaphonePartition(id, k), k))
	if err != nil {
		t.Fatal(err)
	}
	evSubj, _ := subjects.MegaphoneEventsIn(id, k)
	wake, _ := subjects.MegaphoneWake(id)
	return nc, s, evSubj, wake
}

// setRepublish turns the stream's republish of stored events on or off:
// off, every write's wake-up is lost.
func setRepublish(t *testing.T, nc *nats.Conn, s jetstream.Stream, on bool) {
	t.Helper()
	ctx := context.Background()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	if on {
		cfg.RePublish = &jetstream.RePublish{Source: cfg.Subjects[0], Destination: "sb.mp.wake.{{wildcard(1)}}"}
	} else {
		cfg.RePublish = nil
	}
	js, _ := jetstream.New(nc)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// countAPI counts the JetStream API requests seen on nc by kind
// ("DIRECT.GET", "STREAM.PURGE", ...).
func countAPI(t *testing.T, nc *nats.Conn) func(kind string) int64 {
	t.Helper()
	var mu sync.Mutex
	n := map[string]int64{}
	sub, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		parts := strings.Split(m.Subject, ".")
		if len(parts) >= 4 {
			mu.Lock()
			n[parts[2]+"."+parts[3]]++
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func(kind string) int64 {
		mu.Lock()
		defer mu.Unlock()
		return n[kind]
	}
}

// TestCarriedEvents: events written while the reader waits come with
// their wake-ups and are delivered without reading the stream; delivered
// events are removed several at a time (here every 8th).
func TestCarriedEvents(t *testing.T) {
	t.Cleanup(megaphone.SetPurge(8, 4, time.Minute))
	gw := start(t, fast(30*time.Second, 60*time.Second))
	u := gw.URL()
	ch := create(t, u)
	nc, _, _, _ := eventStream(t, gw.EmbeddedURL(), ch.ConsumerAddress)
	p := openPoll(t, u, ch.ConsumerAddress)
	mustWrite(t, u, ch.ProducerAddress, "s", `"first"`)
	if ev := p.next(10 * time.Second); string(ev.Body) != `"first"` {
		t.Fatalf("first event = %s", ev.Body)
	}
	api := countAPI(t, nc)
	const n = 39 // with the first: 40, five purges of 8
	for i := range n {
		mustWrite(t, u, ch.ProducerAddress, "s", strconv.Itoa(i))
		if ev := p.next(10 * time.Second); string(ev.Body) != strconv.Itoa(i) {
			t.Fatalf("event %d = %s", i, ev.Body)
		}
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := api("STREAM.PURGE"); got != 5 {
			return fmt.Errorf("%d purges for 40 delivered events, want 5", got)
		}
		return nil
	})
	if got := api("DIRECT.GET") + api("STREAM.MSG"); got != 0 {
		t.Fatalf("%d stream reads for %d events that came with their wake-ups", got, n)
	}
	if got := buffered(t, gw.EmbeddedURL(), ch.ConsumerAddress); got != 0 {
		t.Fatalf("%d events buffered after 40 delivered and 5 purges of 8", got)
	}
}

// TestCarriedGaps: a reader that misses wake-ups, gets them out of order
// or twice still delivers every event once, in stream order: it reads the
// stream when a wake-up shows an event before it was not delivered.
func TestCarriedGaps(t *testing.T) {
	gw := start(t, fast(30*time.Second, 60*time.Second))
	u := gw.URL()
	ch := create(t, u)
	nc, s, evSubj, wake := eventStream(t, gw.EmbeddedURL(), ch.ConsumerAddress)
	evs := openSSE(t, u, ch.ConsumerAddress)
	mustWrite(t, u, ch.ProducerAddress, "s", `0`)
	first := nextSSE(t, evs)

	// Lost wake-ups: two events stored with no wake-up; the third's shows
	// the gap and the reader reads all three from the stream.
	setRepublish(t, nc, s, false)
	mustWrite(t, u, ch.ProducerAddress, "s", `1`)
	mustWrite(t, u, ch.ProducerAddress, "s", `2`)
	setRepublish(t, nc, s, true)
	mustWrite(t, u, ch.ProducerAddress, "s", `3`)
	last := first.seq
	for i := 1; i <= 3; i++ {
		ev := nextSSE(t, evs)
		if !strings.Contains(ev.data, `"body":`+strconv.Itoa(i)+`}`) || ev.seq <= last {
			t.Fatalf("event %d = %d %s after %d", i, ev.seq, ev.data, last)
		}
		last = ev.seq
	}

	// Out of order and twice: the wake-up of 5 comes before that of 4
	// and both come again; 4 and 5 arrive once each, in order.
	setRepublish(t, nc, s, false)
	stored := func(body string) (uint64, []byte) {
		mustWrite(t, u, ch.ProducerAddress, "s", body)
		m, err := s.GetLastMsgForSubject(context.Background(), evSubj)
		if err != nil {
			t.Fatal(err)
		}
		return m.Sequence, m.Data
	}
	seq4, data4 := stored(`4`)
	seq5, data5 := stored(`5`)
	carry := func(seq, prev uint64, data []byte) {
		m := &nats.Msg{Subject: wake, Data: data, Header: nats.Header{}}
		m.Header.Set(jetstream.SubjectHeader, evSubj)
		m.Header.Set(jetstream.SequenceHeader, strconv.FormatUint(seq, 10))
		m.Header.Set(jetstream.LastSequenceHeader, strconv.FormatUint(prev, 10))
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	carry(seq5, seq4, data5)
	carry(seq4, last, data4)
	carry(seq5, seq4, data5)
	carry(seq4, last, data4)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{seq4, seq5} {
		if ev := nextSSE(t, evs); ev.seq != want {
			t.Fatalf("event %d, want %d: %s", ev.seq, want, ev.data)
		}
	}
	// A wake-up that carries the next event in order is delivered as it
	// came.
	seq6, data6 := stored(`6`)
	carry(seq6, seq5, data6)
	if ev := nextSSE(t, evs); ev.seq != seq6 || !strings.Contains(ev.data, `"body":6}`) {
		t.Fatalf("event %d %s, want %d", ev.seq, ev.data, seq6)
	}
	setRepublish(t, nc, s, true)
	mustWrite(t, u, ch.ProducerAddress, "s", `7`)
	if ev := nextSSE(t, evs); ev.seq <= seq6 || !strings.Contains(ev.data, `"body":7}`) {
		t.Fatalf("event after the forged wake-ups = %d %s", ev.seq, ev.data)
	}
	select {
	case ev := <-evs:
		t.Fatalf("extra event %d %s", ev.seq, ev.data)
	default:
	}
}

// TestTwoWritersOneChannel: writers on two gateways write one channel at
// once; its reader gets every event once, in stream order.
func TestTwoWritersOneChannel(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	gws := harness.StartN(t, 2, srv.URL(), fast(30*time.Second, 60*time.Second))
	ch := create(t, gws[0].URL())
	evs := openSSE(t, gws[0].URL(), ch.ConsumerAddress)
	const per = 150
	var wg sync.WaitGroup
	var failed atomic.Int32
	for w, gw := range gws {
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					if r := write(t, gw.URL(), ch.ProducerAddress, "s", fmt.Sprintf(`"%d-%d-%d"`, w, g, i)); r.Status != 201 {
						failed.Add(1)
					}
				}
			}()
		}
	}
	seen := map[string]bool{}
	var last uint64
	for len(seen) < 4*per {
		ev := nextSSE(t, evs)
		if ev.seq <= last {
			t.Fatalf("event %d after %d: %s", ev.seq, last, ev.data)
		}
		last = ev.seq
		body := ev.data[strings.Index(ev.data, `"body":`):]
		if seen[body] {
			t.Fatalf("event %s delivered twice", body)
		}
		seen[body] = true
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d writes failed", n)
	}
}

// TestFullOfDelivered: a buffer full of delivered events not yet removed
// (the reader removes lazily; here only on demand) does not hold a writer
// back: it asks the reader, which removes them at once. Neither the purge
// delay nor the writer's own retry (both a minute) can free it sooner.
func TestFullOfDelivered(t *testing.T) {
	t.Cleanup(megaphone.SetRoomRetry(time.Minute))
	t.Cleanup(megaphone.SetPurge(1<<20, 0, time.Minute))
	gw := start(t, fast(2*time.Minute, 5*time.Minute), func(c *gateway.Config) {
		c.Megaphone.BufferSize = 5
		c.Megaphone.WriteWait = 2 * time.Minute
	})
	u := gw.URL()
	ch := create(t, u)
	p := openPoll(t, u, ch.ConsumerAddress)
	for i := range 5 {
		mustWrite(t, u, ch.ProducerAddress, "s", strconv.Itoa(i))
		if ev := p.next(10 * time.Second); string(ev.Body) != strconv.Itoa(i) {
			t.Fatalf("event %d = %s", i, ev.Body)
		}
	}
	if got := buffered(t, gw.EmbeddedURL(), ch.ConsumerAddress); got != 5 {
		t.Fatalf("%d events buffered, want the 5 delivered ones", got)
	}
	began := time.Now()
	mustWrite(t, u, ch.ProducerAddress, "s", `5`)
	took := time.Since(began)
	t.Logf("write into a buffer full of delivered events: %s", took)
	if took > 20*time.Second {
		t.Fatalf("write took %s", took)
	}
	if ev := p.next(10 * time.Second); string(ev.Body) != `5` {
		t.Fatalf("event after the full buffer = %s", ev.Body)
	}
	if got := buffered(t, gw.EmbeddedURL(), ch.ConsumerAddress); got > 1 {
		t.Fatalf("%d events buffered after the purge, want at most the last one", got)
	}
}

// TestLazyPurgeMoveGateway: a reader that leaves one gateway with
// delivered events not yet removed and comes back on another never gets
// them again: a poll removes what it delivered before it frees the
// channel, whether the client left or the poll ran out.
func TestLazyPurgeMoveGateway(t *testing.T) {
	t.Cleanup(megaphone.SetPurge(1<<20, 0, time.Minute))
	srv := natstest.RunServer(t, nil)
	gws := harness.StartN(t, 2, srv.URL(), fast(3*time.Second, 60*time.Second))
	a, b := gws[0].URL(), gws[1].URL()
	for _, how := range []string{"client leaves", "poll ends"} {
		t.Run(how, func(t *testing.T) {
			ch := create(t, a)
			p := openPoll(t, a, ch.ConsumerAddress)
			for i := range 5 {
				mustWrite(t, b, ch.ProducerAddress, "s", strconv.Itoa(i))
				if ev := p.next(10 * time.Second); string(ev.Body) != strconv.Itoa(i) {
					t.Fatalf("event %d = %s", i, ev.Body)
				}
			}
			if got := buffered(t, srv.URL(), ch.ConsumerAddress); got != 5 {
				t.Fatalf("%d events buffered during the poll, want the 5 delivered (not yet removed)", got)
			}
			if how == "client leaves" {
				p.close()
			} else if rest, err := p.end(10 * time.Second); len(rest) != 0 || err != nil {
				t.Fatalf("poll end: %d more events, %v", len(rest), err)
			}
			q := openPollWhenFree(t, b, ch.ConsumerAddress)
			// The claim is free only once the events are removed.
			if got := buffered(t, srv.URL(), ch.ConsumerAddress); got != 0 {
				t.Fatalf("%d delivered events still buffered when the next poll opened", got)
			}
			mustWrite(t, a, ch.ProducerAddress, "s", `"new"`)
			if ev := q.next(10 * time.Second); string(ev.Body) != `"new"` {
				t.Fatalf("next poll got %s, want only the new event", ev.Body)
			}
		})
	}
}

// TestQuietRepoll: a channel's first poll on the gateway that created it,
// and a re-poll on the gateway of the previous poll, read nothing from the
// stream when no event was stored since (no wake-up came), and still get
// every event written while they wait; an event written between two polls,
// on this gateway or on another, is read by the next poll.
func TestQuietRepoll(t *testing.T) {
	gw := start(t, fast(4*time.Second, 60*time.Second))
	other := harness.StartN(t, 1, gw.EmbeddedURL(), fast(4*time.Second, 60*time.Second))[0]
	u := gw.URL()
	ch := create(t, u)
	nc, _, _, _ := eventStream(t, gw.EmbeddedURL(), ch.ConsumerAddress)
	id, k := strings.Split(ch.ConsumerAddress, ".")[1], harness.Partitions()
	var reads atomic.Int64
	sub, err := nc.Subscribe(subjects.MegaphoneDirectGetOf(subjects.MegaphonePartition(id, k), k), func(*nats.Msg) {
		reads.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	// quietPoll opens a poll, which must not read the stream, and
	// delivers an event written while it waits.
	quietPoll := func(body string) *poll {
		t.Helper()
		before := reads.Load()
		p := openPollWhenFree(t, u, ch.ConsumerAddress)
		mustWrite(t, u, ch.ProducerAddress, "s", body)
		if ev := p.next(10 * time.Second); string(ev.Body) != body {
			t.Fatalf("event = %s, want %s", ev.Body, body)
		}
		if got := reads.Load() - before; got != 0 {
			t.Fatalf("%d stream reads for a poll of a quiet channel", got)
		}
		if rest, err := p.end(10 * time.Second); len(rest) != 0 || err != nil {
			t.Fatalf("poll end: %d more events, %v", len(rest), err)
		}
		return p
	}
	// readPoll opens a poll after events were written between polls,
	// which must deliver want first, once each. Their wake-ups ended the
	// channel's quiet watch and the poll reads the stream, unless the
	// re-poll (on a kept-alive connection) opened before the gateway's
	// dispatcher took a wake-up in: the poll then starts quiet and gets
	// the events as their wake-ups carry them, which their
	// Nats-Last-Sequence shows follow what the previous poll delivered.
	// Either way is correct; TestQuietWatch holds what ends a watch.
	readPoll := func(want ...string) {
		t.Helper()
		before := reads.Load()
		p := openPollWhenFree(t, u, ch.ConsumerAddress)
		for _, w := range want {
			if ev := p.next(10 * time.Second); string(ev.Body) != w {
				t.Fatalf("event = %s, want %s", ev.Body, w)
			}
		}
		if rest, err := p.end(10 * time.Second); len(rest) != 0 || err != nil {
			t.Fatalf("poll end: %d more events, %v", len(rest), err)
		}
		t.Logf("poll after events written between polls: %d stream reads", reads.Load()-before)
	}

	quietPoll(`"first"`) // just created here
	quietPoll(`"second"`)
	mustWrite(t, other.URL(), ch.ProducerAddress, "s", `"between, elsewhere"`)
	readPoll(`"between, elsewhere"`)
	quietPoll(`"third"`)
	mustWrite(t, u, ch.ProducerAddress, "s", `"between, here"`)
	mustWrite(t, u, ch.ProducerAddress, "s", `"between, here 2"`)
	readPoll(`"between, here"`, `"between, here 2"`)
	quietPoll(`"fourth"`)
}
