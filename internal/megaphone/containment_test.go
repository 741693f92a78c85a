package megaphone_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
)

// drip opens a connection to addr, sends a request head announcing a body
// of size bytes, then trickles the body at one byte per interval. It
// returns the response read within wait.
func drip(t *testing.T, addr, method, path string, hdr []string, size int, interval, wait time.Duration) (*http.Response, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, size)
	for i := 0; i+1 < len(hdr); i += 2 {
		head += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	if _, err := conn.Write([]byte(head + "\r\n")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; i < size; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

// TestBodyTimeout: a client trickling the body of a JSON API is cut after
// http.body_timeout with 408 and a closed connection; routes that read no
// body answer within it too. /read and a write waiting for room long after
// its body arrived are not cut.
func TestBodyTimeout(t *testing.T) {
	gw := start(t, func(c *gateway.Config) {
		c.HTTP.BodyTimeout = 300 * time.Millisecond
		c.Megaphone.AdminToken = "secret"
		c.Megaphone.BufferSize = 1
	})
	u := gw.URL()
	ch := create(t, u)
	// 200 bytes at one per 50 ms would take 10 s.
	for _, path := range []string{"/create", "/write/" + ch.ProducerAddress + "/s", "/write-batch", "/channelsExists"} {
		resp, err := drip(t, gw.Addr(), "POST", path, nil, 200, 50*time.Millisecond, 5*time.Second)
		if err != nil {
			t.Errorf("POST %s: no answer within 5 s: %v", path, err)
			continue
		}
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
			t.Errorf("POST %s: %d, close=%v; want 408 and a closed connection", path, resp.StatusCode, resp.Close)
		}
	}
	resp, err := drip(t, gw.Addr(), "GET", "/admin/channels", []string{"Authorization", "Bearer secret"}, 200, 50*time.Millisecond, 5*time.Second)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /admin/channels with a trickled body: %v %v", resp, err)
	}
	r := do(t, "POST", u+"/write/"+ch.ProducerAddress+"/s", "application/json", `{"a":`)
	if !strings.Contains(r.Body, "BAD_REQUEST") {
		t.Errorf("fast bad body = %d %s", r.Status, r.Body)
	}

	// The buffer (1) is full: the next write waits for room well past the
	// body deadline, and still succeeds once a reader makes room.
	mustWrite(t, u, ch.ProducerAddress, "s", `1`)
	second := make(chan reply, 1)
	go func() { second <- write(t, u, ch.ProducerAddress, "s", `2`) }()
	select {
	case r := <-second:
		t.Fatalf("write into a full buffer answered early: %d %s", r.Status, r.Body)
	case <-time.After(3 * 300 * time.Millisecond):
	}
	opened := time.Now()
	p := openPoll(t, u, ch.ConsumerAddress)
	if ev := p.next(5 * time.Second); string(ev.Body) != "1" {
		t.Fatalf("first event %s", ev.Body)
	}
	if r := <-second; r.Status != http.StatusCreated {
		t.Fatalf("write that waited past the body deadline = %d %s", r.Status, r.Body)
	}
	if ev := p.next(5 * time.Second); string(ev.Body) != "2" {
		t.Fatalf("second event %s", ev.Body)
	}
	if _, err := p.end(10 * time.Second); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if d := time.Since(opened); d < 1500*time.Millisecond {
		t.Fatalf("poll of 2 s ended after %s: cut by the body deadline", d)
	}
}

// TestErrorMessages: 413 says what exceeded what; no message spans lines.
func TestErrorMessages(t *testing.T) {
	gw := start(t, func(c *gateway.Config) { c.HTTP.BodyLimit = 4096 })
	u := gw.URL()
	ch := create(t, u)
	big := `"` + strings.Repeat("x", 5000) + `"`
	cases := []struct{ method, path, body, want string }{
		{"POST", "/write/" + ch.ProducerAddress + "/s", big, "request body exceeds http.body_limit of 4KiB"},
		{"POST", "/create", big, "request body exceeds http.body_limit of 4KiB"},
		{"POST", "/write-batch", `{"channels":[` + big + `]}`, "request body exceeds http.body_limit of 4KiB"},
		{"POST", "/write-batch", `{`, ""},
		{"POST", "/write-batch", `{"channels":"x","messages":[]}`, ""},
		{"POST", "/channelsExists", `[`, ""},
		{"POST", "/write/" + ch.ProducerAddress + "/s", `{"a":`, ""},
		{"POST", "/write-batch", `{"channels":[],"channelIds":[],"messages":[]}`, ""},
		{"POST", "/write-batch", `{"channels":[],"messages":[{"streamId":"s"}]}`, ""},
	}
	for _, c := range cases {
		r := do(t, c.method, u+c.path, "application/json", c.body)
		var e struct{ Code, Message string }
		if err := json.Unmarshal([]byte(r.Body), &e); err != nil || e.Code == "" {
			t.Errorf("%s %.40s: %d %q is not an envelope", c.method, c.path, r.Status, r.Body)
			continue
		}
		if strings.ContainsAny(e.Message, "\r\n") {
			t.Errorf("%s %.40s %.20s: message spans lines: %q", c.method, c.path, c.body, e.Message)
		}
		if c.want != "" && (r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(e.Message, c.want)) {
			t.Errorf("%s %.40s: %d %q, want 413 saying %q", c.method, c.path, r.Status, e.Message, c.want)
		}
	}
}

// TestEventTooLarge: a body within http.body_limit whose event does not
// fit in a NATS message is 413 saying so.
func TestEventTooLarge(t *testing.T) {
	gw := start(t, func(c *gateway.Config) { c.HTTP.BodyLimit = 2 << 20; c.Megaphone.AdminToken = "admin" })
	ch := create(t, gw.URL())
	r := write(t, gw.URL(), ch.ProducerAddress, "s", `"`+strings.Repeat("x", 3<<19)+`"`)
	var e struct{ Code, Message string }
	if r.Status != http.StatusRequestEntityTooLarge || json.Unmarshal([]byte(r.Body), &e) != nil ||
		!strings.Contains(e.Message, "stored event of 1572") || !strings.Contains(e.Message, "max_payload 1048576") {
		t.Fatalf("event over max_payload: %d %s", r.Status, r.Body)
	}
	// In a batch such a message fails the whole request, as it always did.
	batch := fmt.Sprintf(`{"channels":[%q],"messages":[{"streamId":"s","body":1},{"streamId":"s","body":"%s"}]}`,
		ch.ConsumerAddress, strings.Repeat("x", 3<<19))
	r = do(t, "POST", gw.URL()+"/write-batch", "application/json", batch)
	if r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "messages[1]") || !strings.Contains(r.Body, "max_payload 1048576") {
		t.Fatalf("batch with an event over max_payload: %d %s", r.Status, r.Body)
	}
	if got := adminBuffered(t, gw, ch.ConsumerAddress); got != 0 {
		t.Fatalf("%d events stored by refused writes", got)
	}
}

// maxEvent is a gateway refusing events the way an operator whose readers
// run megaphone-js 0.10.3 (which breaks on lines of 64 KiB) would.
func maxEvent(c *gateway.Config) {
	c.Megaphone.MaxEventBytes = 65535
	c.Megaphone.AdminToken = "admin"
}

// adminBuffered returns how many events the channel of consumer holds.
func adminBuffered(t *testing.T, gw *harness.Gateway, consumer string) int {
	t.Helper()
	r := do(t, "GET", gw.URL()+"/admin/channels", "", "", "Authorization", "Bearer admin")
	var list []struct {
		ConsumerAddress string
		Buffered        int
	}
	if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Body), &list) != nil {
		t.Fatalf("admin list = %d %s", r.Status, r.Body)
	}
	for _, c := range list {
		if c.ConsumerAddress == consumer {
			return c.Buffered
		}
	}
	t.Fatalf("channel %s not listed: %s", consumer, r.Body)
	return 0
}

var tooLargeMsg = regexp.MustCompile(`event of (\d+) bytes exceeds megaphone\.max_event_bytes of 65535`)

// TestMaxEventBytes: with megaphone.max_event_bytes = 65535 an event of
// 70 KiB is 413 naming the sizes and is not stored (a reader gets only
// the 1 KiB event written after it).
func TestMaxEventBytes(t *testing.T) {
	gw := start(t, maxEvent)
	u := gw.URL()
	ch := create(t, u)
	big := `"` + strings.Repeat("x", 70<<10) + `"`
	r := write(t, u, ch.ProducerAddress, "s", big)
	var e struct{ Code, Message string }
	if r.Status != http.StatusRequestEntityTooLarge || json.Unmarshal([]byte(r.Body), &e) != nil || e.Code != "PAYLOAD_TOO_LARGE" {
		t.Fatalf("70 KiB event = %d %s", r.Status, r.Body)
	}
	m := tooLargeMsg.FindStringSubmatch(e.Message)
	if m == nil {
		t.Fatalf("70 KiB event: message %q", e.Message)
	}
	if n, _ := strconv.Atoi(m[1]); n <= len(big) {
		t.Fatalf("70 KiB event measured as %d bytes: %q", n, e.Message)
	}
	if got := adminBuffered(t, gw, ch.ConsumerAddress); got != 0 {
		t.Fatalf("%d events stored by the refused write", got)
	}
	small := `"` + strings.Repeat("y", 1<<10) + `"`
	mustWrite(t, u, ch.ProducerAddress, "s", small)
	p := openPoll(t, u, ch.ConsumerAddress)
	if ev := p.next(5 * time.Second); string(ev.Body) != small {
		t.Fatalf("first event read has a body of %d bytes, want the 1 KiB one", len(ev.Body))
	}
	if rest, err := p.end(10 * time.Second); len(rest) != 0 || err != nil {
		t.Fatalf("poll carried %d more events, err %v", len(rest), err)
	}
}

// TestStreamIDDecoding: the {stream-id} path segment is percent-decoded
// exactly once whatever it holds, as read back in the event's sid.
func TestStreamIDDecoding(t *testing.T) {
	gw := start(t)
	u := gw.URL()
	ch := create(t, u)
	cases := []struct{ raw, sid string }{
		{"plain", "plain"},
		{"a%20b", "a b"},
		{"a%2Fb", "a/b"},
		{"%25", "%"},
		{"%2525", "%25"},
		{"100%25%2F", "100%/"},
		{"a+b", "a+b"},
		{"%C3%A9", "é"},
		{"%c3%a9", "é"},
		{"%41", "A"},
		{"%2E%2E", ".."},
		{"~!$&'()*,;=:@", "~!$&'()*,;=:@"},
		{strings.Repeat("x", 256), strings.Repeat("x", 256)},
		{strings.Repeat("%78", 256), strings.Repeat("x", 256)},
	}
	for _, c := range cases {
		mustWrite(t, u, ch.ProducerAddress, c.raw, `1`)
	}
	p := openPoll(t, u, ch.ConsumerAddress)
	for _, c := range cases {
		if ev := p.next(5 * time.Second); ev.SID != c.sid {
			t.Errorf("stream id %q: sid %q, want %q", c.raw, ev.SID, c.sid)
		}
	}
	for _, raw := range []string{strings.Repeat("x", 257), strings.Repeat("%78", 257), strings.Repeat("é", 129)} {
		if r := write(t, u, ch.ProducerAddress, raw, `1`); r.Status != http.StatusBadRequest || r.code() != "BAD_REQUEST" {
			t.Errorf("stream id of %d bytes: %d %s", len(raw), r.Status, r.Body)
		}
	}
	batch := fmt.Sprintf(`{"channels":[%q],"messages":[{"streamId":%q,"body":1}]}`, ch.ProducerAddress, strings.Repeat("x", 257))
	if r := do(t, "POST", u+"/write-batch", "application/json", batch); r.Status != http.StatusBadRequest {
		t.Errorf("batch stream id of 257 bytes: %d %s", r.Status, r.Body)
	}
	if st := rawStatus(t, gw.Addr(), "POST /write/"+ch.ProducerAddress+"/a%zz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1"); st != http.StatusBadRequest {
		t.Errorf("invalid escape: %d", st)
	}
	if _, err := p.end(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func rawStatus(t *testing.T, addr, req string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestLongNames: names of any length on every Megaphone route are 400
// BAD_REQUEST (or net/http's own 431), and the gateway serves on.
func TestLongNames(t *testing.T) {
	gw := start(t, func(c *gateway.Config) { c.Megaphone.AdminToken = "secret" })
	u := gw.URL()
	ch := create(t, u)
	auth := []string{"Authorization", "Bearer secret"}
	type name struct{ label, raw, decoded string }
	var names []name
	for _, n := range []int{1 << 10, 5 << 10, 70 << 10} {
		plain := strings.Repeat("a", n)
		shaped := "main." + plain + ".1"
		names = append(names, name{fmt.Sprintf("%d B", n), plain, plain}, name{fmt.Sprintf("main.%d B.1", n), shaped, shaped})
	}
	names = append(names, name{"%2E x 1400", strings.Repeat("%2E", 1400), strings.Repeat(".", 1400)},
		name{"main.%2E x 1400", "main." + strings.Repeat("%2E", 1400), "main." + strings.Repeat(".", 1400)})
	for _, n := range names {
		list, _ := json.Marshal(map[string][]string{"channels": {n.decoded}})
		batch, _ := json.Marshal(map[string]any{"channels": []string{n.decoded}, "messages": []map[string]any{{"streamId": "s", "body": 1}}})
		sidBatch, _ := json.Marshal(map[string]any{"channels": []string{ch.ProducerAddress}, "messages": []map[string]any{{"streamId": n.decoded, "body": 1}}})
		cases := []struct {
			method, path, body string
			hdr                []string
		}{
			{"POST", "/write/" + n.raw + "/s", `1`, nil},
			{"POST", "/write/" + ch.ProducerAddress + "/" + n.raw, `1`, nil},
			{"GET", "/read/" + n.raw, "", nil},
			{"DELETE", "/admin/channels/" + n.raw, "", auth},
			{"POST", "/channelsExists", string(list), nil},
			{"POST", "/write-batch", string(batch), nil},
			{"POST", "/write-batch", string(sidBatch), nil},
		}
		for _, c := range cases {
			r := do(t, c.method, u+c.path, "application/json", c.body, c.hdr...)
			if !(r.Status == http.StatusBadRequest && r.code() == "BAD_REQUEST") && r.Status != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("%s %.30s… (%s): %d %.200s", c.method, c.path, n.label, r.Status, r.Body)
			}
		}
	}
	harness.Smoke(t, u)
}

// TestMaxEventBytesBatch: in /write-batch a message over
// megaphone.max_event_bytes is PAYLOAD_TOO_LARGE on each live channel,
// the channel's later messages SKIPPED (as after a TIMEOUT, so what a
// channel got stays a prefix of the batch); an unknown channel is still
// NOT_FOUND for every index.
func TestMaxEventBytesBatch(t *testing.T) {
	gw := start(t, maxEvent)
	u := gw.URL()
	a := create(t, u)
	unknown := "main." + strings.Repeat("b", 50) + ".1"
	body := fmt.Sprintf(`{"channels":[%q,%q],"messages":[{"streamId":"s","body":0},{"streamId":"s","body":"%s"},{"streamId":"s","body":2}]}`,
		a.ProducerAddress, unknown, strings.Repeat("x", 70<<10))
	r := do(t, "POST", u+"/write-batch", "application/json", body)
	var want strings.Builder
	fmt.Fprintf(&want, `{"failures":[{"channel":%q,"index":1,"reason":"PAYLOAD_TOO_LARGE"},{"channel":%q,"index":2,"reason":"SKIPPED"}`,
		a.ProducerAddress, a.ProducerAddress)
	for i := range 3 {
		fmt.Fprintf(&want, `,{"channel":%q,"index":%d,"reason":"NOT_FOUND"}`, unknown, i)
	}
	want.WriteString("]}\n")
	if r.Status != http.StatusCreated || r.Body != want.String() {
		t.Fatalf("batch = %d %s\nwant %s", r.Status, r.Body, want.String())
	}
	p := openPoll(t, u, a.ConsumerAddress)
	if ev := p.next(5 * time.Second); string(ev.Body) != "0" {
		t.Fatalf("first event %.40s, want 0", ev.Body)
	}
	if rest, err := p.end(10 * time.Second); len(rest) != 0 || err != nil {
		t.Fatalf("poll carried %d more events, err %v", len(rest), err)
	}
}

// TestMaxEventBytesDefault: without megaphone.max_event_bytes an event of
// 70 KiB is stored and read whole, as before the key existed.
func TestMaxEventBytesDefault(t *testing.T) {
	gw := start(t)
	u := gw.URL()
	ch := create(t, u)
	big := `"` + strings.Repeat("x", 70<<10) + `"`
	mustWrite(t, u, ch.ProducerAddress, "s", big)
	resp, err := client.Get(u + "/read/" + ch.ConsumerAddress)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	var ev event
	if err != nil || json.Unmarshal(line, &ev) != nil || string(ev.Body) != big {
		t.Fatalf("read %d bytes, err %v", len(line), err)
	}
}
