package megaphone_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
)

// fast shortens every Megaphone timing so the suite stays quick.
func fast(poll, ttl time.Duration) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.Log.Level = "info"
		c.Megaphone.PollDuration = poll
		c.Megaphone.ChannelTTL = ttl
		c.Megaphone.WriteWait = 2 * time.Second
	}
}

func start(t *testing.T, mods ...func(*gateway.Config)) *harness.Gateway {
	t.Helper()
	return harness.StartEmbedded(t, func(c *gateway.Config) {
		fast(2*time.Second, 30*time.Second)(c)
		for _, m := range mods {
			m(c)
		}
	})
}

var client = &http.Client{Timeout: 60 * time.Second}

type created struct {
	ChannelID       string   `json:"channelId"`
	ProducerAddress string   `json:"producerAddress"`
	ConsumerAddress string   `json:"consumerAddress"`
	AgentName       string   `json:"agentName"`
	Protocols       []string `json:"protocols"`
}

type reply struct {
	Status int
	Body   string
	Header http.Header
}

func (r reply) code() string {
	var e struct{ Code string }
	_ = json.Unmarshal([]byte(r.Body), &e)
	return e.Code
}

func do(t testing.TB, method, url, ctype, body string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Body: string(b), Header: resp.Header}
}

func create(t testing.TB, base string) created {
	t.Helper()
	r := do(t, "POST", base+"/create", "", "")
	if r.Status != 200 {
		t.Fatalf("create = %d %s", r.Status, r.Body)
	}
	var c created
	if err := json.Unmarshal([]byte(r.Body), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func write(t testing.TB, base, addr, sid, body string) reply {
	t.Helper()
	return do(t, "POST", base+"/write/"+addr+"/"+sid, "application/json", body)
}

func mustWrite(t testing.TB, base, addr, sid, body string) {
	t.Helper()
	if r := write(t, base, addr, sid, body); r.Status != 201 || r.Body != `{"status":"OK"}`+"\n" {
		t.Fatalf("write = %d %q", r.Status, r.Body)
	}
}

type event struct {
	SID  string          `json:"sid"`
	EID  string          `json:"eid"`
	TS   string          `json:"ts"`
	Body json.RawMessage `json:"body"`
}

// poll is one /read request read the way the Megaphone clients read it:
// chunk by chunk, every chunk checked for whole, non-blank lines.
type poll struct {
	t      testing.TB
	resp   *http.Response
	cancel context.CancelFunc
	events chan event
	done   chan error
}

// pollWritten writes body to channel c on base, polls it there until
// the poll's deadline and fails the test unless that event came.
func pollWritten(t testing.TB, base string, c created, body string) {
	t.Helper()
	mustWrite(t, base, c.ProducerAddress, "s", body)
	p := openPoll(t, base, c.ConsumerAddress)
	if ev := p.next(5 * time.Second); string(ev.Body) != body {
		t.Fatalf("event = %s, want %s", ev.Body, body)
	}
	if _, err := p.end(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// openPollWhenFree retries GET /read/addr while it answers 409 (the
// previous reader's claim is being released).
func openPollWhenFree(t testing.TB, base, addr string) *poll {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, status := tryPoll(t, base, addr)
		if p != nil {
			return p
		}
		if status != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("read = %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openPoll starts GET /read/addr; it fails the test unless the answer is
// 200 application/x-ndjson.
func openPoll(t testing.TB, base, addr string) *poll {
	t.Helper()
	p, status := tryPoll(t, base, addr)
	if p == nil {
		t.Fatalf("read = %d", status)
	}
	return p
}

func tryPoll(t testing.TB, base, addr string) (*poll, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/read/"+addr, nil)
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("read: %v", err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Logf("read = %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		return nil, resp.StatusCode
	}
	p := &poll{t: t, resp: resp, cancel: cancel, events: make(chan event, 1000), done: make(chan error, 1)}
	go p.loop()
	t.Cleanup(p.close)
	return p, 200
}

// loop reads raw chunks. Each must parse like megaphone-js (trim, split on
// "\n", JSON.parse every piece) and like the Rust client (split on "\n",
// no partial line carried over): whole lines, none blank.
func (p *poll) loop() {
	defer close(p.events)
	buf := make([]byte, 1<<20)
	for {
		n, err := p.resp.Body.Read(buf)
		if n > 0 {
			if cerr := checkChunk(buf[:n], p.events); cerr != nil {
				p.done <- cerr
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			p.done <- err
			return
		}
	}
}

// checkChunk parses one chunk as both clients do.
func checkChunk(chunk []byte, out chan<- event) error {
	if !bytes.HasSuffix(chunk, []byte("\n")) {
		return &chunkError{"chunk does not end with a newline", chunk}
	}
	trimmed := bytes.TrimSpace(chunk)
	if len(trimmed) == 0 {
		return &chunkError{"blank chunk", chunk}
	}
	for _, line := range bytes.Split(trimmed, []byte("\n")) { // JS client
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil {
			return &chunkError{"line is not JSON: " + err.Error(), chunk}
		}
		if ev.EID == "" || ev.TS == "" {
			return &chunkError{"event without eid/ts", chunk}
		}
		out <- ev
	}
	for _, line := range bytes.Split(chunk, []byte("\n")) { // Rust client
		if len(line) > 0 && !json.Valid(line) {
			return &chunkError{"partial line", chunk}
		}
	}
	return nil
}

type chunkError struct {
	msg   string
	chunk []byte
}

func (e *chunkError) Error() string { return e.msg + ": " + string(e.chunk) }

// next returns the next event or fails after timeout.
func (p *poll) next(timeout time.Duration) event {
	p.t.Helper()
	select {
	case ev, ok := <-p.events:
		if !ok {
			p.t.Fatalf("poll ended before the expected event: %v", <-p.done)
		}
		return ev
	case <-time.After(timeout):
		p.t.Fatalf("no event within %s", timeout)
	}
	return event{}
}

// end waits for the poll to end by itself and returns the events it
// still carried and the read error.
func (p *poll) end(timeout time.Duration) ([]event, error) {
	p.t.Helper()
	var out []event
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				return out, <-p.done
			}
			out = append(out, ev)
		case <-deadline:
			p.t.Fatalf("poll did not end within %s", timeout)
		}
	}
}

func (p *poll) close() {
	p.cancel()
	p.resp.Body.Close()
	for range p.events {
	}
}

// sseLines reads an SSE response into (id, data) pairs.
func sseRead(r io.Reader, max int) ([][2]string, error) {
	sc := bufio.NewScanner(r)
	var out [][2]string
	var id string
	for sc.Scan() && len(out) < max {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			out = append(out, [2]string{id, strings.TrimPrefix(line, "data: ")})
		}
	}
	return out, sc.Err()
}

// exists asks /channelsExists about one address.
func exists(t testing.TB, base, addr string) bool {
	t.Helper()
	b, _ := json.Marshal(map[string][]string{"channels": {addr}})
	r := do(t, "POST", base+"/channelsExists", "application/json", string(b))
	var out struct{ Channels map[string]bool }
	if r.Status != 200 || json.Unmarshal([]byte(r.Body), &out) != nil {
		t.Fatalf("channelsExists = %d %s", r.Status, r.Body)
	}
	return out.Channels[addr]
}
