package megaphone_test

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/megaphone"
)

// TestQueuedPolls: with one opening slot, a burst of polls mostly waits
// for it taken over from net/http. Every poll of a live channel still
// gets its 200 stream and its events; a poll of an unknown channel gets
// the same 404 (status, headers, body) as one answered by the handler,
// and a second reader of a channel the same 409 BUSY, each closing the
// connection.
func TestQueuedPolls(t *testing.T) {
	defer megaphone.SetMaxOpening(1)()
	gw := start(t, fast(20*time.Second, 30*time.Second))
	base := gw.URL()
	const n = 40
	chans := make([]created, n)
	for i := range chans {
		chans[i] = create(t, base)
	}
	// An address of the right form that names no channel.
	b := []byte(chans[0].ConsumerAddress)
	b[len(b)/2] ^= 1
	unknown := string(b)
	want := do(t, "GET", base+"/read/"+unknown, "", "")
	if want.Status != http.StatusNotFound {
		t.Fatalf("unknown channel: %d %s", want.Status, want.Body)
	}

	queued := megaphone.QueuedPolls()
	polls := make([]*poll, n)
	refused := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			p, status := tryPoll(t, base, chans[i].ConsumerAddress)
			if p == nil {
				t.Errorf("poll %d = %d", i, status)
			}
			polls[i] = p
		}()
		go func() {
			defer wg.Done()
			refused[i] = do(t, "GET", base+"/read/"+unknown, "", "")
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	got := megaphone.QueuedPolls() - queued
	if got == 0 {
		t.Fatalf("no poll of %d waited for its opening slot", 2*n)
	}
	// Each queued poll is counted once by its outcome: opened (a live
	// channel) or refused with the handler's status (404 here).
	outcomes := queuedOutcomes(t, base)
	if sum := outcomes["opened"] + outcomes["404"]; sum != float64(got) || len(outcomes) > 2 {
		t.Errorf("queued poll outcomes %v, want %d opened or 404", outcomes, got)
	}
	for i, r := range refused {
		if r.Status != want.Status || r.Body != want.Body {
			t.Errorf("unknown channel, poll %d: %d %q, want %d %q", i, r.Status, r.Body, want.Status, want.Body)
		}
		for _, k := range []string{"Content-Type", "X-Content-Type-Options"} {
			if r.Header.Get(k) != want.Header.Get(k) {
				t.Errorf("unknown channel, poll %d: %s %q, want %q", i, k, r.Header.Get(k), want.Header.Get(k))
			}
		}
	}

	// Every channel has its reader: more polls of them are refused busy.
	busy := make([]reply, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			busy[i] = do(t, "GET", base+"/read/"+chans[i].ConsumerAddress, "", "")
		}()
	}
	wg.Wait()
	for i, r := range busy {
		if r.Status != http.StatusConflict || r.code() != "BUSY" {
			t.Errorf("second reader %d: %d %s", i, r.Status, r.Body)
		}
	}

	for i, c := range chans {
		mustWrite(t, base, c.ProducerAddress, "s", `{"n":`+string(rune('0'+i%10))+`}`)
	}
	for i, p := range polls {
		if ev := p.next(10 * time.Second); ev.SID != "s" {
			t.Errorf("poll %d: event %+v", i, ev)
		}
	}
}

// queuedOutcomes reads megaphone_queued_polls_total by result
// from the gateway's /metrics page, where every Megaphone metric is named
// megaphone_* (SPEC §1), none switchboard_megaphone_*.
func queuedOutcomes(t *testing.T, base string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	const prefix = `megaphone_queued_polls_total{result="`
	for _, line := range strings.Split(do(t, "GET", base+"/metrics", "", "").Body, "\n") {
		if strings.Contains(line, "switchboard_megaphone_") {
			t.Fatalf("metrics line %q: Megaphone metrics are named megaphone_*", line)
		}
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		label, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			t.Fatalf("metrics line %q", line)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[label] = v
	}
	return out
}
