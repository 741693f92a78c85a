package megaphone_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// TestSecondReaderBusy: one reader per channel; the claim frees when the
// first poll ends, or at once when its client disconnects.
func TestSecondReaderBusy(t *testing.T) {
	gw := start(t, fast(3*time.Second, 30*time.Second))
	c := create(t, gw.URL())
	p := openPoll(t, gw.URL(), c.ConsumerAddress)
	if r := do(t, "GET", gw.URL()+"/read/"+c.ConsumerAddress, "", ""); r.Status != 409 || r.code() != "BUSY" {
		t.Fatalf("second reader = %d %s", r.Status, r.Body)
	}
	p.close() // the client goes away mid-poll
	natstest.Eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", gw.URL()+"/read/"+c.ConsumerAddress, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("reader after disconnect = %d", resp.StatusCode)
		}
		return nil
	})
}

// TestDisconnectLosesNothing: events not flushed to a reader that left stay
// buffered for the next one; flushed ones are not repeated.
//
// The events after the disconnect are written once the gateway has seen
// the client go: one written before that may reach the dead socket, which
// accepts it, and then counts as delivered (without client acks nothing
// tells the two apart; SPEC §1 allows it, clients de-duplicate by eid).
// Written at once, 5 runs of 120 under load lost event 3 that way.
func TestDisconnectLosesNothing(t *testing.T) {
	gw := start(t, fast(5*time.Second, 30*time.Second))
	c := create(t, gw.URL())
	p := openPoll(t, gw.URL(), c.ConsumerAddress)
	for i := range 3 {
		mustWrite(t, gw.URL(), c.ProducerAddress, "s", strconv.Itoa(i))
	}
	for i := range 3 {
		if ev := p.next(5 * time.Second); string(ev.Body) != strconv.Itoa(i) {
			t.Fatalf("event %d = %s", i, ev.Body)
		}
	}
	p.close()
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := metric(t, gw.URL(), "megaphone_open_readers"); n != 0 {
			return fmt.Errorf("%v polls still open", n)
		}
		return nil
	})
	for i := 3; i < 6; i++ {
		mustWrite(t, gw.URL(), c.ProducerAddress, "s", strconv.Itoa(i))
	}
	p2 := openPollWhenFree(t, gw.URL(), c.ConsumerAddress)
	for i := 3; i < 6; i++ {
		if ev := p2.next(5 * time.Second); string(ev.Body) != strconv.Itoa(i) {
			t.Fatalf("event %d = %s", i, ev.Body)
		}
	}
}

// TestFullBuffer: 100 writes fit; the 101st waits and gets 503 TIMEOUT
// after write_wait with no reader, or succeeds as soon as a reader drains.
func TestFullBuffer(t *testing.T) {
	gw := start(t, fast(3*time.Second, 60*time.Second), func(c *gateway.Config) { c.Megaphone.WriteWait = 1500 * time.Millisecond })
	c := create(t, gw.URL())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 100; i += 4 {
				if r := write(t, gw.URL(), c.ProducerAddress, "s", strconv.Itoa(i)); r.Status != 201 {
					t.Errorf("write %d = %d %s", i, r.Status, r.Body)
				}
			}
		}()
	}
	wg.Wait()
	began := time.Now()
	r := write(t, gw.URL(), c.ProducerAddress, "s", `"overflow"`)
	if r.Status != 503 || r.code() != "TIMEOUT" {
		t.Fatalf("101st write = %d %s", r.Status, r.Body)
	}
	if waited := time.Since(began); waited < 1400*time.Millisecond {
		t.Fatalf("101st write gave up after %s", waited)
	}
	done := make(chan reply, 1)
	began = time.Now()
	go func() { done <- write(t, gw.URL(), c.ProducerAddress, "s", `"waited"`) }()
	p := openPoll(t, gw.URL(), c.ConsumerAddress)
	got := 0
	for got < 101 {
		ev := p.next(10 * time.Second)
		got++
		if got == 101 && string(ev.Body) != `"waited"` {
			t.Fatalf("last event = %s", ev.Body)
		}
	}
	r = <-done
	if r.Status != 201 {
		t.Fatalf("waiting write = %d %s", r.Status, r.Body)
	}
	if waited := time.Since(began); waited > 1400*time.Millisecond {
		t.Logf("waiting write took %s (reader drained)", waited)
	}
}

// TestAcceptanceCases are megaphone-broker's own: two streams on one
// channel, ten channels at once.
func TestAcceptanceCases(t *testing.T) {
	gw := start(t)
	c := create(t, gw.URL())
	for i := range 10 {
		sid := "even"
		if i%2 == 1 {
			sid = "odd"
		}
		mustWrite(t, gw.URL(), c.ConsumerAddress, sid, strconv.Itoa(i))
	}
	p := openPoll(t, gw.URL(), c.ConsumerAddress)
	for i := range 10 {
		ev := p.next(5 * time.Second)
		if string(ev.Body) != strconv.Itoa(i) || (ev.SID == "even") != (i%2 == 0) {
			t.Fatalf("event %d = %+v", i, ev)
		}
	}
	var chans []created
	var polls []*poll
	for range 10 {
		ch := create(t, gw.URL())
		chans = append(chans, ch)
		polls = append(polls, openPoll(t, gw.URL(), ch.ConsumerAddress))
	}
	for i, ch := range chans {
		mustWrite(t, gw.URL(), ch.ProducerAddress, "s", strconv.Itoa(i))
	}
	for i, p := range polls {
		if ev := p.next(5 * time.Second); string(ev.Body) != strconv.Itoa(i) {
			t.Fatalf("channel %d got %s", i, ev.Body)
		}
	}
}

// TestClientReconnectLoop reads like the Megaphone clients: a new GET right
// after each poll ends. 100 writes arrive exactly once, in order, each
// within 1 s, across several polls; every chunk is whole lines.
func TestClientReconnectLoop(t *testing.T) {
	gw := start(t, fast(700*time.Millisecond, 30*time.Second))
	c := create(t, gw.URL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type got struct {
		ev event
		at time.Time
	}
	recv := make(chan got, 1000)
	polls := 0
	readerDone := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, "GET", gw.URL()+"/read/"+c.ConsumerAddress, nil)
			resp, err := client.Do(req)
			if err != nil {
				readerDone <- nil
				return
			}
			if resp.StatusCode != 200 {
				resp.Body.Close()
				readerDone <- fmt.Errorf("poll %d = %d", polls, resp.StatusCode)
				return
			}
			polls++
			events := make(chan event, 1000)
			buf := make([]byte, 1<<16)
			for {
				n, err := resp.Body.Read(buf)
				if n > 0 {
					if cerr := checkChunk(buf[:n], events); cerr != nil {
						readerDone <- cerr
						return
					}
				}
				for len(events) > 0 {
					recv <- got{<-events, time.Now()}
				}
				if err != nil {
					break
				}
			}
			resp.Body.Close()
		}
		readerDone <- nil
	}()
	sent := map[string]time.Time{}
	var mu sync.Mutex
	for i := range 100 {
		body := strconv.Itoa(i)
		mu.Lock()
		sent[body] = time.Now()
		mu.Unlock()
		mustWrite(t, gw.URL(), c.ProducerAddress, "s", body)
		if i%10 < 5 { // paced writes and bursts
			time.Sleep(40 * time.Millisecond)
		}
	}
	var slow []string
	for i := range 100 {
		select {
		case g := <-recv:
			if string(g.ev.Body) != strconv.Itoa(i) {
				t.Fatalf("event %d = %s (lost or reordered)", i, g.ev.Body)
			}
			mu.Lock()
			if lat := g.at.Sub(sent[string(g.ev.Body)]); lat > time.Second {
				slow = append(slow, fmt.Sprintf("%d:%s", i, lat))
			}
			mu.Unlock()
		case err := <-readerDone:
			t.Fatalf("reader stopped: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d missing", i)
		}
	}
	if len(slow) > 0 {
		t.Errorf("events slower than 1 s: %v", slow)
	}
	cancel()
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	if polls < 2 {
		t.Fatalf("only %d polls", polls)
	}
	select {
	case g := <-recv:
		t.Fatalf("duplicate or extra event %s", g.ev.Body)
	default:
	}
}

// TestSSE: Accept text/event-stream gives id/data messages; Last-Event-ID
// resumes after the given event.
func TestSSE(t *testing.T) {
	gw := start(t, fast(time.Second, 30*time.Second))
	c := create(t, gw.URL())
	for i := range 3 {
		mustWrite(t, gw.URL(), c.ProducerAddress, "s", strconv.Itoa(i))
	}
	read := func(lastID string, want int) [][2]string {
		var resp *http.Response
		natstest.Eventually(t, 10*time.Second, func() error {
			req, _ := http.NewRequest("GET", gw.URL()+"/read/"+c.ConsumerAddress, nil)
			req.Header.Set("Accept", "text/event-stream")
			if lastID != "" {
				req.Header.Set("Last-Event-ID", lastID)
			}
			var err error
			if resp, err = client.Do(req); err != nil {
				return err
			}
			if resp.StatusCode == 409 {
				resp.Body.Close()
				return errors.New("busy")
			}
			return nil
		})
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("sse = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		got, err := sseRead(resp.Body, want)
		if err != nil || len(got) != want {
			t.Fatalf("sse events %v, %v", got, err)
		}
		return got
	}
	got := read("", 3)
	for i, g := range got {
		if !strings.Contains(g[1], `"body":`+strconv.Itoa(i)+`}`) || g[0] == "" {
			t.Fatalf("sse event %d = %v", i, g)
		}
	}
	// An event the client already got but that stayed buffered (its
	// reader's gateway died between flush and removal) is skipped on a
	// resume with Last-Event-ID, and removed.
	nc, err := nats.Connect(gw.EmbeddedURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	evSubj, _ := subjects.MegaphoneEventsIn(strings.Split(c.ConsumerAddress, ".")[1], harness.Partitions())
	ack, err := js.Publish(context.Background(), evSubj,
		[]byte(`{"sid":"s","eid":"AAAAAAAAAAAAAAAAAAAAAAA","ts":"2026-01-01T00:00:00Z","body":3}`))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, gw.URL(), c.ProducerAddress, "s", `4`)
	got = read(strconv.FormatUint(ack.Sequence, 10), 1)
	if !strings.Contains(got[0][1], `"body":4}`) {
		t.Fatalf("resumed event = %v", got)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := buffered(t, gw.EmbeddedURL(), c.ConsumerAddress); n != 0 {
			return fmt.Errorf("%d events still buffered", n)
		}
		return nil
	})
	r := do(t, "GET", gw.URL()+"/read/"+c.ConsumerAddress, "", "", "Accept", "text/event-stream", "Last-Event-ID", "abc")
	if r.Status != 400 || r.code() != "BAD_REQUEST" {
		t.Fatalf("bad Last-Event-ID = %d %s", r.Status, r.Body)
	}
}

// TestShutdownEndsPoll: a gateway stop ends an open poll's body cleanly.
func TestShutdownEndsPoll(t *testing.T) {
	gw := start(t, fast(30*time.Second, 60*time.Second))
	c := create(t, gw.URL())
	p := openPoll(t, gw.URL(), c.ConsumerAddress)
	mustWrite(t, gw.URL(), c.ProducerAddress, "s", `1`)
	p.next(5 * time.Second)
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := p.end(5 * time.Second); err != nil {
		t.Fatalf("poll body after shutdown: %v", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
}
