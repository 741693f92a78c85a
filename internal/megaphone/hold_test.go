package megaphone_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// claimOf reads a channel's reader claim key as the gateways wrote it.
func claimOf(t *testing.T, js jetstream.JetStream, consumer string) jetstream.KeyValueEntry {
	t.Helper()
	id := strings.Split(consumer, ".")[1]
	k := harness.Partitions()
	bucket := subjects.MegaphoneReadersBucketOf(subjects.MegaphonePartition(id, k), k)
	kv, err := js.KeyValue(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	// History holds the release (purge) markers that Get hides.
	h, err := kv.History(context.Background(), id)
	if err != nil {
		t.Fatalf("claim of %s: %v", id, err)
	}
	return h[len(h)-1]
}

// handoffs reads megaphone_claim_handoffs_total{result} from a gateway.
func handoffs(t *testing.T, base, result string) float64 {
	t.Helper()
	r := do(t, "GET", base+"/metrics", "", "")
	m := regexp.MustCompile(`(?m)^megaphone_claim_handoffs_total\{result="` + result + `"\} (\S+)$`).FindStringSubmatch(r.Body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestClaimHeldBetweenPolls: a poll that reached its deadline keeps its
// claim for the channel's next poll. The next poll on the same gateway
// renews it; on another gateway it is handed over; while a poll reads
// there, it is 409; a gateway that shuts down releases what it holds.
func TestClaimHeldBetweenPolls(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	js, err := jetstream.New(natstest.Connect(t, srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	gws := harness.StartN(t, 2, srv.URL(), fast(time.Second, 30*time.Second))
	a, b := gws[0].URL(), gws[1].URL()
	c := create(t, a)

	pollWritten(t, a, c, `1`)
	held := claimOf(t, js, c.ConsumerAddress)
	if held.Operation() != jetstream.KeyValuePut {
		t.Fatalf("claim after a poll reached its deadline: %v, want held (a put)", held.Operation())
	}
	// The same gateway renews it: the next revision is a put by a again.
	p := openPoll(t, a, c.ConsumerAddress)
	if _, err := p.end(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	renewed := claimOf(t, js, c.ConsumerAddress)
	if renewed.Operation() != jetstream.KeyValuePut || string(renewed.Value()) != string(held.Value()) ||
		renewed.Revision() <= held.Revision() {
		t.Fatalf("claim after a re-poll on a: %v %q rev %d, want a's put after rev %d",
			renewed.Operation(), renewed.Value(), renewed.Revision(), held.Revision())
	}
	if n := handoffs(t, a, "given") + handoffs(t, a, "busy"); n != 0 {
		t.Fatalf("a asked for its own claim %v times", n)
	}

	// Another gateway gets it handed over and delivers.
	mustWrite(t, a, c.ProducerAddress, "s", `2`)
	pb := openPoll(t, b, c.ConsumerAddress)
	if ev := pb.next(5 * time.Second); string(ev.Body) != `2` {
		t.Fatalf("event on b = %s", ev.Body)
	}
	if n := handoffs(t, b, "given"); n != 1 {
		t.Fatalf("b's hand-offs given = %v, want 1", n)
	}
	// While b reads, a's poll is 409: b does not hand over an open poll's claim.
	if r := do(t, "GET", a+"/read/"+c.ConsumerAddress, "", ""); r.Status != 409 {
		t.Fatalf("poll on a while b reads = %d %s", r.Status, r.Body)
	}
	if n := handoffs(t, a, "busy"); n != 1 {
		t.Fatalf("a's hand-offs busy = %v, want 1", n)
	}
	if _, err := pb.end(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if e := claimOf(t, js, c.ConsumerAddress); e.Operation() != jetstream.KeyValuePut || string(e.Value()) == string(held.Value()) {
		t.Fatalf("claim after b's poll: %v %q, want held by b", e.Operation(), e.Value())
	}

	// b shuts down and releases what it holds: a opens without asking.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gws[1].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if e := claimOf(t, js, c.ConsumerAddress); e.Operation() == jetstream.KeyValuePut {
		t.Fatalf("claim after b shut down: still held by %q", e.Value())
	}
	p = openPoll(t, a, c.ConsumerAddress)
	mustWrite(t, a, c.ProducerAddress, "s", `3`)
	if ev := p.next(5 * time.Second); string(ev.Body) != `3` {
		t.Fatalf("event after b's shutdown = %s", ev.Body)
	}
	p.close()
	if n := handoffs(t, a, "given"); n != 0 {
		t.Fatalf("a asked for a released claim: %v given", n)
	}
}

// TestClaimHolderGone: a claim whose holder does not answer (a gateway
// that died between polls) is 409 until its TTL ends, then free; hand-off
// requests that are not what a gateway sends change nothing.
func TestClaimHolderGone(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	nc := natstest.Connect(t, srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	gw := harness.StartN(t, 1, srv.URL(), fast(time.Second, 30*time.Second))[0]
	c := create(t, gw.URL())

	// A claim held by a gateway that is gone, as it left it: a live
	// value with a TTL.
	id := strings.Split(c.ConsumerAddress, ".")[1]
	k := harness.Partitions()
	subj, err := subjects.KVKeySubject(subjects.MegaphoneReadersBucketOf(subjects.MegaphonePartition(id, k), k), id)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 3 * time.Second
	m := &nats.Msg{Subject: subj, Data: []byte("vanishedGateway"), Header: nats.Header{jetstream.MsgTTLHeader: {ttl.String()}}}
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	placed := time.Now()
	if r := do(t, "GET", gw.URL()+"/read/"+c.ConsumerAddress, "", ""); r.Status != 409 {
		t.Fatalf("poll while a gone gateway holds the claim = %d %s", r.Status, r.Body)
	}
	if n := handoffs(t, gw.URL(), "unanswered"); n != 1 {
		t.Fatalf("hand-offs unanswered = %v, want 1", n)
	}
	// Free once its TTL ends: within the SPEC's 10 s past the TTL.
	var p *poll
	for p == nil {
		var status int
		if p, status = tryPoll(t, gw.URL(), c.ConsumerAddress); p == nil {
			if status != 409 || time.Since(placed) > ttl+10*time.Second {
				e := claimOf(t, js, c.ConsumerAddress)
				t.Fatalf("poll %v after the claim was placed = %d; claim %v %q rev %d",
					time.Since(placed), status, e.Operation(), e.Value(), e.Revision())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if waited := time.Since(placed); waited < ttl-time.Second {
		t.Fatalf("claim taken %v after it was placed, before its TTL (%v)", waited, ttl)
	}
	if _, err := p.end(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	// The gateway holds the claim now. Requests to its hold subject that
	// do not name that claim at its revision are "busy" and leave it.
	held := claimOf(t, js, c.ConsumerAddress)
	hold, err := subjects.MegaphoneHold(string(held.Value()))
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []string{"", "x", strconv.FormatUint(held.Revision()+1, 10) + " " + id,
		strconv.FormatUint(held.Revision(), 10) + " " + id + "x", "1 a.b", strings.Repeat("9", 4096)} {
		resp, err := nc.Request(hold, []byte(req), 5*time.Second)
		if err != nil || string(resp.Data) != "busy" {
			t.Fatalf("hand-off request %.40q = %v, %v", req, resp, err)
		}
	}
	// It still holds it: its next poll renews it.
	p = openPoll(t, gw.URL(), c.ConsumerAddress)
	defer p.close()
	if e := claimOf(t, js, c.ConsumerAddress); e.Operation() != jetstream.KeyValuePut ||
		e.Revision() <= held.Revision() || string(e.Value()) != string(held.Value()) {
		t.Fatalf("claim after the requests and a poll: %v %q rev %d, want renewed after rev %d",
			e.Operation(), e.Value(), e.Revision(), held.Revision())
	}
}
