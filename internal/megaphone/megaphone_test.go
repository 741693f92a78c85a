package megaphone_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

var consumerRE = regexp.MustCompile(`^main\.[A-Za-z0-9]{50}\.1$`)

func TestCreate(t *testing.T) {
	gw := start(t)
	for _, body := range []string{"", `{"protocols":["HTTP_STREAM_NDJSON_V1"]}`, `{"protocols":[]}`, `not json`, `{"protocols":["X","HTTP_STREAM_NDJSON_V1"]}`} {
		r := do(t, "POST", gw.URL()+"/create", "application/json", body)
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("create(%q) = %d %q", body, r.Status, r.Body)
		}
		var c created
		if err := json.Unmarshal([]byte(r.Body), &c); err != nil {
			t.Fatal(err)
		}
		if c.ChannelID != c.ConsumerAddress || !consumerRE.MatchString(c.ConsumerAddress) || c.AgentName != "main" ||
			len(c.Protocols) != 1 || c.Protocols[0] != "HTTP_STREAM_NDJSON_V1" {
			t.Fatalf("create = %+v", c)
		}
		agent, tok, ok := strings.Cut(c.ProducerAddress, ".")
		if !ok || agent != "main" || strings.Contains(tok, ".") || strings.Contains(tok, c.ConsumerAddress[5:55]) {
			t.Fatalf("producer address %q", c.ProducerAddress)
		}
	}
	r := do(t, "POST", gw.URL()+"/create", "application/json", `{"protocols":["HTTP_STREAM_JSON_V2"]}`)
	if r.Status != 400 || r.code() != "BAD_REQUEST" {
		t.Fatalf("create without our protocol = %d %s", r.Status, r.Body)
	}
}

func TestWriteThenRead(t *testing.T) {
	gw := start(t)
	c := create(t, gw.URL())
	mustWrite(t, gw.URL(), c.ProducerAddress, "s1", `{"hello": "world",
  "n": 1}`)
	mustWrite(t, gw.URL(), c.ConsumerAddress, "s2", `"two"`)
	p := openPoll(t, gw.URL(), c.ConsumerAddress)
	ev := p.next(5 * time.Second)
	if ev.SID != "s1" || string(ev.Body) != `{"hello":"world","n":1}` || len(ev.EID) != 23 || !strings.HasSuffix(ev.TS, "Z") {
		t.Fatalf("event 1 = %+v", ev)
	}
	if _, err := time.Parse(time.RFC3339, ev.TS); err != nil {
		t.Fatalf("ts %q: %v", ev.TS, err)
	}
	if ev := p.next(5 * time.Second); ev.SID != "s2" || string(ev.Body) != `"two"` {
		t.Fatalf("event 2 = %+v", ev)
	}
	// The poll keeps streaming after the first events.
	mustWrite(t, gw.URL(), c.ProducerAddress, "s3", `3`)
	if ev := p.next(5 * time.Second); ev.SID != "s3" {
		t.Fatalf("event 3 = %+v", ev)
	}
	rest, err := p.end(10 * time.Second)
	if err != nil || len(rest) != 0 {
		t.Fatalf("end of poll: %v, %d more events", err, len(rest))
	}
}
