package megaphone_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// TestTwoGatewaysOneNATS: any gateway serves any request.
func TestTwoGatewaysOneNATS(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	gws := harness.StartN(t, 2, srv.URL(), fast(2*time.Second, 30*time.Second))
	a, b := gws[0].URL(), gws[1].URL()
	c := create(t, a)
	mustWrite(t, b, c.ProducerAddress, "s", `"from b"`)
	p := openPoll(t, a, c.ConsumerAddress)
	if ev := p.next(5 * time.Second); string(ev.Body) != `"from b"` {
		t.Fatalf("event = %s", ev.Body)
	}
	if r := do(t, "GET", b+"/read/"+c.ConsumerAddress, "", ""); r.Status != 409 {
		t.Fatalf("reader on the other gateway = %d", r.Status)
	}
	mustWrite(t, b, c.ConsumerAddress, "s", `"live"`)
	if ev := p.next(5 * time.Second); string(ev.Body) != `"live"` {
		t.Fatalf("event = %s", ev.Body)
	}
}

// TestCluster: a 3-node cluster with replicas 3 and three gateways: create
// on A, write on B, read on C; one reader cluster-wide; expiry disposes
// once (one webhook call) whichever gateway notices.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	hook := newHookSink(t)
	_, gws := harness.StartOnCluster(t, 3, func(c *gateway.Config) {
		fast(2*time.Second, 3*time.Second)(c)
		c.Megaphone.WebhookURL = hook.srv.URL
	})
	a, b, cgw := gws[0].URL(), gws[1].URL(), gws[2].URL()
	ch := create(t, a)
	for i := range 5 {
		mustWrite(t, b, ch.ProducerAddress, "s", strconv.Itoa(i))
	}
	p := openPoll(t, cgw, ch.ConsumerAddress)
	for i := range 5 {
		if ev := p.next(10 * time.Second); string(ev.Body) != strconv.Itoa(i) {
			t.Fatalf("event %d = %s", i, ev.Body)
		}
	}
	for _, g := range []string{a, b} {
		if r := do(t, "GET", g+"/read/"+ch.ConsumerAddress, "", ""); r.Status != 409 {
			t.Fatalf("second reader on another gateway = %d %s", r.Status, r.Body)
		}
	}
	mustWrite(t, a, ch.ConsumerAddress, "s", `"live"`)
	if ev := p.next(10 * time.Second); string(ev.Body) != `"live"` {
		t.Fatalf("live event = %s", ev.Body)
	}
	if _, err := p.end(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	// A reconnect on another gateway right after the poll ended.
	p2 := openPollWhenFree(t, a, ch.ConsumerAddress)
	mustWrite(t, cgw, ch.ProducerAddress, "s", `"again"`)
	if ev := p2.next(10 * time.Second); string(ev.Body) != `"again"` {
		t.Fatalf("event after reconnect = %s", ev.Body)
	}
	p2.close()
	// Never read again: it expires; every gateway answers 404 within 10 s
	// of the TTL and the webhook fires once.
	natstest.Eventually(t, 20*time.Second, func() error {
		for _, g := range []string{a, b, cgw} {
			if exists(t, g, ch.ProducerAddress) {
				return errors.New("channel still exists on " + g)
			}
		}
		return nil
	})
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := hook.channels(); len(got) != 1 || got[0] != ch.ConsumerAddress {
			return fmt.Errorf("webhook calls %v", got)
		}
		return nil
	})
	if r := write(t, b, ch.ProducerAddress, "s", `1`); r.Status != 404 {
		t.Fatalf("write after expiry = %d", r.Status)
	}
}
