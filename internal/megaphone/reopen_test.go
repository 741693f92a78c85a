package megaphone_test

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// TestReopenAfterOtherGateway: a gateway opens a re-poll with the key
// revisions it wrote itself at the previous poll's end; when another
// gateway's poll moved both keys on since, or holds the claim, or the
// channel was deleted, the re-poll still gets what a fresh open gets (200
// with the events, 409, 404).
func TestReopenAfterOtherGateway(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	gws := harness.StartN(t, 2, srv.URL(), func(c *gateway.Config) {
		fast(time.Second, 30*time.Second)(c)
		c.Megaphone.AdminToken = "secret"
	})
	a, b := gws[0].URL(), gws[1].URL()
	c := create(t, a)

	// A poll on a to its deadline: a remembers the revisions it wrote.
	pollWritten(t, a, c, `1`)
	// A poll on b moves the claim and the channel key on; once it ended,
	// a opens with stale revisions and delivers.
	pb := openPoll(t, b, c.ConsumerAddress)
	if _, err := pb.end(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, b, c.ProducerAddress, "s", `2`)
	p := openPoll(t, a, c.ConsumerAddress) // b holds its claim idle and hands it over
	if ev := p.next(5 * time.Second); string(ev.Body) != `2` {
		t.Fatalf("event after b's poll = %s", ev.Body)
	}
	if _, err := p.end(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// While b reads, a's re-poll with its remembered revisions is 409.
	pb = openPoll(t, b, c.ConsumerAddress)
	if r := do(t, "GET", a+"/read/"+c.ConsumerAddress, "", ""); r.Status != 409 {
		t.Fatalf("re-poll on a while b reads = %d %s", r.Status, r.Body)
	}
	if _, err := pb.end(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	p = openPoll(t, a, c.ConsumerAddress)
	if _, err := p.end(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// a remembers revisions again; the channel is deleted on b: a's
	// re-poll is 404, not a poll of a deleted channel.
	if r := do(t, "DELETE", b+"/admin/channels/"+c.ConsumerAddress, "", "", "Authorization", "Bearer secret"); r.Status != 200 {
		t.Fatalf("delete = %d %s", r.Status, r.Body)
	}
	if r := do(t, "GET", a+"/read/"+c.ConsumerAddress, "", ""); r.Status != 404 {
		t.Fatalf("re-poll of a deleted channel = %d %s", r.Status, r.Body)
	}
}
