package middleman

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboard/switchboard/internal/subjects"
)

// startSession serves a fake connection with key on h until the test ends
// and returns it with its cid.
func startSession(t *testing.T, h *Hub, key string) (*fakeConn, string) {
	t.Helper()
	c := newFakeConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, c) }()
	t.Cleanup(func() { cancel(); <-done })
	c.in <- []byte(key)
	if got := c.recv(t); got != "MM OK" {
		t.Fatalf("handshake %q", got)
	}
	return c, c.recv(t)
}

// until returns what c received before a message for which stop is true.
func (c *fakeConn) until(t *testing.T, stop func(string) bool) []string {
	t.Helper()
	var before []string
	for {
		got := c.recv(t)
		if stop(got) {
			return before
		}
		before = append(before, got)
	}
}

// quiet checks that c received nothing before a probe round trip.
func (c *fakeConn) quiet(t *testing.T) {
	t.Helper()
	c.in <- []byte("NOP sync")
	if got := c.until(t, func(s string) bool { return strings.Contains(s, "Unknown command NOP sync") }); len(got) != 0 {
		t.Fatalf("unexpected %q", got)
	}
}

// TestControlFromNATSIsChecked publishes, as a NATS client could, REQs and
// control messages with malformed or forged ids and foreign reply
// subjects: each is dropped and counted, no session sees it, and the
// gateway publishes nothing to a subject it did not derive itself.
func TestControlFromNATSIsChecked(t *testing.T) {
	h, nc := newTestHub(t, Config{})
	svc, svcCID := startSession(t, h, "svc")
	cli, cliCID := startSession(t, h, "cli")
	svc.in <- []byte("EREQ k")
	svc.quiet(t)
	cli.in <- []byte("REQ k\r\n\r\nreal\r\n.\r\n")
	req := svc.recv(t)
	f, err := Parse([]byte(req))
	if err != nil {
		t.Fatal(err)
	}
	rid := f.Get(HeaderRid)

	evil, err := nc.SubscribeSync("evil.>")
	if err != nil {
		t.Fatal(err)
	}
	gw, n, _ := subjects.ParseMiddlemanCID(cliCID)
	_, svcN, _ := subjects.ParseMiddlemanCID(svcCID)
	reqSubj, _ := subjects.MiddlemanReq("k")
	conn, _ := subjects.MiddlemanConn(gw, n)
	ctrl := "sb.mm.gw." + gw + "."
	frame := []byte("REQ k\r\nRid: x\r\n\r\nq\r\n.\r\n")
	res := []byte("RES k\r\n\r\nforged\r\n.\r\n")
	ridHdr := func(v string) nats.Header { return nats.Header{hdrRid: []string{v}} }
	intHdr := func(rid, uid string) nats.Header {
		return nats.Header{hdrKind: []string{kindInt}, hdrUID: []string{uid}, hdrRid: []string{rid}}
	}
	malformed := []*nats.Msg{
		{Subject: reqSubj, Reply: "evil.1", Data: frame, Header: nats.Header{}},
		{Subject: reqSubj, Reply: "evil.2", Data: frame, Header: ridHdr("x")},
		{Subject: reqSubj, Reply: "evil.3", Data: frame, Header: ridHdr("a.b-1-1-S")},
		{Subject: reqSubj, Reply: "evil.4", Data: frame, Header: ridHdr(cliCID + "-1")},
		{Subject: conn, Reply: "evil.5", Header: intHdr("", "mallory")},
		{Subject: conn, Reply: "evil.6", Header: intHdr("*-1-1-S", "mallory")},
		{Subject: conn, Reply: "evil.7", Header: intHdr(">", "mallory")},
		{Subject: ctrl + "c.01", Reply: "evil.8", Header: intHdr(rid, "mallory")},
		{Subject: ctrl + "r." + strings.ReplaceAll(strings.TrimPrefix(rid, gw+"-"), "-", ".") + ".x", Data: res, Header: nats.Header{hdrKind: []string{kindRes}}},
		{Subject: ctrl + "r.1.1", Data: res, Header: nats.Header{hdrKind: []string{kindRes}}},
		{Subject: conn, Reply: "evil.9", Header: nats.Header{hdrKind: []string{"nope"}}},
	}
	for _, m := range malformed {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// The right reply subject with a wrong secret, as if svc sent it: the
	// answer is dropped and svc hears why.
	i := strings.LastIndex(rid, "-")
	wrong, _ := subjects.ParseMiddlemanRID(rid[:i+1] + strings.Repeat("A", len(rid)-i-1))
	wrongReply, err := wrong.Reply()
	if err != nil {
		t.Fatal(err)
	}
	forged := &nats.Msg{Subject: wrongReply, Data: res, Header: nats.Header{hdrKind: []string{kindRes}, hdrCid: []string{svcCID}}}
	if err := nc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	// A delivery to svc after all of them: the dispatcher handles NATS
	// messages in order, so when it arrives the others were handled.
	svcConn, _ := subjects.MiddlemanConn(gw, svcN)
	barrier := &nats.Msg{Subject: svcConn, Data: []byte("PUB b\r\n\r\nbarrier\r\n.\r\n"), Header: nats.Header{hdrKind: []string{kindMsg}}}
	if err := nc.PublishMsg(barrier); err != nil {
		t.Fatal(err)
	}
	got := svc.until(t, func(s string) bool { return strings.Contains(s, "barrier") })
	if len(got) != 1 || got[0] != "PUB ERROR\r\n\r\nUnknown Rid RES k\r\n.\r\n" {
		t.Fatalf("responder got %q, want only Unknown Rid RES k", got)
	}
	cli.quiet(t)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := evil.NextMsg(0); err == nil {
		t.Fatalf("gateway published to %s", m.Subject)
	}
	if got, want := testutil.ToFloat64(h.m.refused[refusedMalformed]), float64(len(malformed)); got != want {
		t.Fatalf("malformed messages counted %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(h.m.refused[refusedUnmatched]); got != 1 {
		t.Fatalf("unmatched answers counted %v, want 1", got)
	}

	// The uid is unchanged, and the real answer still gets through.
	if got := h.session(n).UID(); got != "" {
		t.Fatalf("uid %q", got)
	}
	svc.in <- []byte("RES k\r\nRid: " + rid + "\r\n\r\nanswer\r\n.\r\n")
	if got := cli.recv(t); !strings.Contains(got, "answer") {
		t.Fatalf("RES %q", got)
	}
}
