package megaphone_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// TestBadInput: every malformed request gets a clear error and changes
// nothing.
func TestBadInput(t *testing.T) {
	gw := start(t, func(c *gateway.Config) { c.Megaphone.AdminToken = "secret"; c.HTTP.BodyLimit = 4096 })
	c := create(t, gw.URL())
	u := gw.URL()
	unknown := "main." + strings.Repeat("a", 50) + ".1"
	forged := c.ProducerAddress[:len(c.ProducerAddress)-2] + "AA"
	if forged == c.ProducerAddress {
		forged = c.ProducerAddress[:len(c.ProducerAddress)-2] + "BB"
	}
	otherAgent := "other" + c.ProducerAddress[4:]
	big := `"` + strings.Repeat("x", 5000) + `"`
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
	}{
		{"write text/plain", "POST", "/write/" + c.ProducerAddress + "/s", "text/plain", `1`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"write no type", "POST", "/write/" + c.ProducerAddress + "/s", "", `1`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"write bad json", "POST", "/write/" + c.ProducerAddress + "/s", "application/json", `{"a":`, 400, "BAD_REQUEST"},
		{"write empty body", "POST", "/write/" + c.ProducerAddress + "/s", "application/json", ``, 400, "BAD_REQUEST"},
		{"write two values", "POST", "/write/" + c.ProducerAddress + "/s", "application/json", `1 2`, 400, "BAD_REQUEST"},
		{"write too large", "POST", "/write/" + c.ProducerAddress + "/s", "application/json", big, 413, "PAYLOAD_TOO_LARGE"},
		{"write no dot", "POST", "/write/nodot/s", "application/json", `1`, 400, "BAD_REQUEST"},
		{"write forged token", "POST", "/write/" + forged + "/s", "application/json", `1`, 400, "BAD_REQUEST"},
		{"write token of other agent", "POST", "/write/" + otherAgent + "/s", "application/json", `1`, 400, "BAD_REQUEST"},
		{"write garbage token", "POST", "/write/main.!!!/s", "application/json", `1`, 400, "BAD_REQUEST"},
		{"write unknown", "POST", "/write/" + unknown + "/s", "application/json", `1`, 404, "NOT_FOUND"},
		{"write missing stream", "POST", "/write/" + c.ProducerAddress, "application/json", `1`, 404, "NOT_FOUND"},
		{"read no dot", "GET", "/read/nodot", "", "", 400, "BAD_REQUEST"},
		{"read producer address", "GET", "/read/" + c.ProducerAddress, "", "", 404, "NOT_FOUND"},
		{"read unknown", "GET", "/read/" + unknown, "", "", 404, "NOT_FOUND"},
		{"read other agent", "GET", "/read/other" + c.ConsumerAddress[4:], "", "", 404, "NOT_FOUND"},
		{"read wrong suffix", "GET", "/read/" + strings.TrimSuffix(c.ConsumerAddress, "1") + "2", "", "", 404, "NOT_FOUND"},
		{"create wrong protocol", "POST", "/create", "application/json", `{"protocols":["NOPE"]}`, 400, "BAD_REQUEST"},
		{"create too large", "POST", "/create", "application/json", big, 413, "PAYLOAD_TOO_LARGE"},
		{"batch text", "POST", "/write-batch", "text/plain", `{}`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"batch bad json", "POST", "/write-batch", "application/json", `{`, 400, "BAD_REQUEST"},
		{"batch no channels", "POST", "/write-batch", "application/json", `{"messages":[]}`, 400, "BAD_REQUEST"},
		{"batch both lists", "POST", "/write-batch", "application/json", `{"channels":[],"channelIds":[],"messages":[]}`, 400, "BAD_REQUEST"},
		{"batch no messages", "POST", "/write-batch", "application/json", `{"channels":["` + c.ConsumerAddress + `"]}`, 400, "BAD_REQUEST"},
		{"batch no body", "POST", "/write-batch", "application/json", `{"channels":["` + c.ConsumerAddress + `"],"messages":[{"streamId":"s"}]}`, 400, "BAD_REQUEST"},
		{"batch no stream", "POST", "/write-batch", "application/json", `{"channels":["` + c.ConsumerAddress + `"],"messages":[{"body":1}]}`, 400, "BAD_REQUEST"},
		{"batch empty stream", "POST", "/write-batch", "application/json", `{"channels":["` + c.ConsumerAddress + `"],"messages":[{"streamId":"","body":1}]}`, 400, "BAD_REQUEST"},
		{"batch channels not list", "POST", "/write-batch", "application/json", `{"channels":"x","messages":[]}`, 400, "BAD_REQUEST"},
		{"exists text", "POST", "/channelsExists", "text/plain", `{}`, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"exists bad json", "POST", "/channelsExists", "application/json", `[`, 400, "BAD_REQUEST"},
		{"exists no list", "POST", "/channelsExists", "application/json", `{}`, 400, "BAD_REQUEST"},
		{"exists too large", "POST", "/channelsExists", "application/json", `{"channels":[` + big + `]}`, 413, "PAYLOAD_TOO_LARGE"},
		{"admin no token", "GET", "/admin/channels", "", "", 401, "UNAUTHORIZED"},
		{"admin delete no token", "DELETE", "/admin/channels/" + c.ConsumerAddress, "", "", 401, "UNAUTHORIZED"},
		{"read wrong method", "POST", "/read/" + c.ConsumerAddress, "", "", 405, "METHOD_NOT_ALLOWED"},
	}
	for _, tc := range cases {
		r := do(t, tc.method, u+tc.path, tc.ctype, tc.body)
		if r.Status != tc.status || r.code() != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
		}
	}
	auth := []string{"Authorization", "Bearer wrong"}
	if r := do(t, "GET", u+"/admin/channels", "", "", auth...); r.Status != 401 {
		t.Errorf("admin wrong token = %d", r.Status)
	}
	// Nothing changed: the channel holds no event and still works.
	p := openPoll(t, u, c.ConsumerAddress)
	mustWrite(t, u, c.ProducerAddress, "s", `"only"`)
	if ev := p.next(5 * time.Second); string(ev.Body) != `"only"` {
		t.Fatalf("first event after bad input = %s", ev.Body)
	}
}

// TestWriteBatch: per channel in order, shared eid/ts, NOT_FOUND per index
// for unknown channels, TIMEOUT then SKIPPED on a full buffer.
func TestWriteBatch(t *testing.T) {
	gw := start(t, func(c *gateway.Config) {
		c.Megaphone.BufferSize = 2
		c.Megaphone.WriteWait = 500 * time.Millisecond
	})
	u := gw.URL()
	a, b := create(t, u), create(t, u)
	unknown := "main." + strings.Repeat("b", 50) + ".1"
	body := fmt.Sprintf(`{"channels":[%q,%q,%q,"nodot"],"messages":[{"streamId":"x","body":{"n":0}},{"streamId":"y","body":1}]}`,
		a.ProducerAddress, b.ConsumerAddress, unknown)
	r := do(t, "POST", u+"/write-batch", "application/json", body)
	want := fmt.Sprintf(`{"failures":[{"channel":%q,"index":0,"reason":"NOT_FOUND"},{"channel":%q,"index":1,"reason":"NOT_FOUND"},`+
		`{"channel":"nodot","index":0,"reason":"NOT_FOUND"},{"channel":"nodot","index":1,"reason":"NOT_FOUND"}]}`+"\n", unknown, unknown)
	if r.Status != 201 || r.Body != want {
		t.Fatalf("batch = %d %s\nwant %s", r.Status, r.Body, want)
	}
	pa, pb := openPoll(t, u, a.ConsumerAddress), openPoll(t, u, b.ConsumerAddress)
	for i := range 2 {
		ea, eb := pa.next(5*time.Second), pb.next(5*time.Second)
		if ea.EID != eb.EID || ea.TS != eb.TS || ea.SID != eb.SID || string(ea.Body) != string(eb.Body) {
			t.Fatalf("message %d differs across channels: %+v %+v", i, ea, eb)
		}
	}
	pa.close()
	// b is full after 2 more; the third times out, the fourth is skipped.
	r = do(t, "POST", u+"/write-batch", "application/json",
		fmt.Sprintf(`{"channelIds":[%q],"messages":[{"streamId":"s","body":0},{"streamId":"s","body":1},{"streamId":"s","body":2},{"streamId":"s","body":3}]}`, a.ConsumerAddress))
	want = fmt.Sprintf(`{"failures":[{"channel":%q,"index":2,"reason":"TIMEOUT"},{"channel":%q,"index":3,"reason":"SKIPPED"}]}`+"\n",
		a.ConsumerAddress, a.ConsumerAddress)
	if r.Status != 201 || r.Body != want {
		t.Fatalf("full batch = %d %s\nwant %s", r.Status, r.Body, want)
	}
	r = do(t, "POST", u+"/write-batch", "application/json", `{"channels":[],"messages":[]}`)
	if r.Status != 201 || r.Body != `{"failures":[]}`+"\n" {
		t.Fatalf("empty batch = %d %s", r.Status, r.Body)
	}
}

// TestChannelsExists: both address forms of a live channel are true.
func TestChannelsExists(t *testing.T) {
	gw := start(t)
	c := create(t, gw.URL())
	unknown := "main." + strings.Repeat("c", 50) + ".1"
	for _, field := range []string{"channels", "channelIds"} {
		body, _ := json.Marshal(map[string][]string{field: {c.ConsumerAddress, c.ProducerAddress, unknown, "nodot", "main.bad"}})
		r := do(t, "POST", gw.URL()+"/channelsExists", "application/json", string(body))
		var out struct{ Channels map[string]bool }
		if r.Status != 200 || json.Unmarshal([]byte(r.Body), &out) != nil {
			t.Fatalf("channelsExists = %d %s", r.Status, r.Body)
		}
		want := map[string]bool{c.ConsumerAddress: true, c.ProducerAddress: true, unknown: false, "nodot": false, "main.bad": false}
		if fmt.Sprint(out.Channels) != fmt.Sprint(want) {
			t.Fatalf("channelsExists = %v", out.Channels)
		}
	}
}

// TestAdmin: list with buffered counts, delete (which ends an open poll and
// fires the webhook), bearer token required, off without a token.
func TestAdmin(t *testing.T) {
	hook := newHookSink(t)
	gw := start(t, fast(10*time.Second, 60*time.Second), func(c *gateway.Config) {
		c.Megaphone.AdminToken = "secret"
		c.Megaphone.WebhookURL = hook.srv.URL
	})
	u := gw.URL()
	auth := []string{"Authorization", "Bearer secret"}
	a, b := create(t, u), create(t, u)
	mustWrite(t, u, a.ProducerAddress, "s", `1`)
	mustWrite(t, u, a.ProducerAddress, "s", `2`)
	r := do(t, "GET", u+"/admin/channels", "", "", auth...)
	var list []struct {
		ConsumerAddress string
		Buffered        int
	}
	if r.Status != 200 || json.Unmarshal([]byte(r.Body), &list) != nil || len(list) != 2 {
		t.Fatalf("list = %d %s", r.Status, r.Body)
	}
	for _, ch := range list {
		if (ch.ConsumerAddress == a.ConsumerAddress && ch.Buffered != 2) || (ch.ConsumerAddress == b.ConsumerAddress && ch.Buffered != 0) ||
			(ch.ConsumerAddress != a.ConsumerAddress && ch.ConsumerAddress != b.ConsumerAddress) {
			t.Fatalf("list entry %+v", ch)
		}
	}
	p := openPoll(t, u, b.ConsumerAddress)
	for _, ch := range []created{a, b} {
		if r := do(t, "DELETE", u+"/admin/channels/"+ch.ConsumerAddress, "", "", auth...); r.Status != 200 {
			t.Fatalf("delete = %d %s", r.Status, r.Body)
		}
		if r := write(t, u, ch.ProducerAddress, "s", `1`); r.Status != 404 {
			t.Fatalf("write after delete = %d", r.Status)
		}
	}
	if _, err := p.end(5 * time.Second); err != nil {
		t.Fatalf("poll of a deleted channel: %v", err)
	}
	if r := do(t, "DELETE", u+"/admin/channels/"+a.ConsumerAddress, "", "", auth...); r.Status != 404 {
		t.Fatalf("second delete = %d", r.Status)
	}
	if r := do(t, "DELETE", u+"/admin/channels/"+a.ProducerAddress, "", "", auth...); r.Status != 404 {
		t.Fatalf("delete by producer address = %d", r.Status)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		got := hook.channels()
		if len(got) != 2 || !(got[0] == a.ConsumerAddress || got[1] == a.ConsumerAddress) {
			return fmt.Errorf("webhook %v", got)
		}
		return nil
	})
	if r := do(t, "GET", u+"/admin/channels", "", "", auth...); r.Status != 200 || r.Body != "[]\n" {
		t.Fatalf("list after delete = %d %s", r.Status, r.Body)
	}
	off := start(t)
	if r := do(t, "GET", off.URL()+"/admin/channels", "", "", auth...); r.Status != 404 {
		t.Fatalf("admin without a configured token = %d", r.Status)
	}
}

// TestCORS: configured origins get CORS headers and preflight answers.
func TestCORS(t *testing.T) {
	gw := start(t, func(c *gateway.Config) { c.HTTP.CORSOrigins = []string{"https://app.example"} })
	u := gw.URL()
	r := do(t, "OPTIONS", u+"/create", "", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "content-type")
	if r.Status != 204 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight = %d %v", r.Status, r.Header)
	}
	r = do(t, "POST", u+"/create", "", "", "Origin", "https://app.example")
	if r.Status != 200 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("create with origin = %d %v", r.Status, r.Header)
	}
	r = do(t, "POST", u+"/create", "", "", "Origin", "https://evil.example")
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin allowed: %v", r.Header)
	}
}
