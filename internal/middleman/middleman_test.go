package middleman_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

func TestHandshake(t *testing.T) {
	a, b := twoGateways(t, nil)
	seen := map[string]bool{}
	for _, gw := range []*harness.Gateway{a, b} {
		for _, key := range []string{svcKey, cliKey, superKey, " " + svcKey + "\r\n"} {
			c := dial(t, gw, key)
			if _, _, err := subjects.ParseMiddlemanCID(c.cid); err != nil {
				t.Errorf("cid %q: %v", c.cid, err)
			}
			if seen[c.cid] {
				t.Errorf("cid %q issued twice", c.cid)
			}
			seen[c.cid] = true
		}
	}
	refused := map[string]func(ws *websocket.Conn){
		"wrong key": func(ws *websocket.Conn) { _ = ws.Write(context.Background(), websocket.MessageText, []byte("nope")) },
		"empty key": func(ws *websocket.Conn) { _ = ws.Write(context.Background(), websocket.MessageText, nil) },
		"binary key": func(ws *websocket.Conn) {
			_ = ws.Write(context.Background(), websocket.MessageBinary, []byte(svcKey))
		},
		"frame instead of key": func(ws *websocket.Conn) {
			_ = ws.Write(context.Background(), websocket.MessageText, []byte("PUB x\r\n\r\n.\r\n"))
		},
	}
	for name, send := range refused {
		t.Run(name, func(t *testing.T) {
			ws := rawDial(t, a.URL(), nil)
			send(ws)
			if got := closeStatus(t, ws); got != websocket.StatusPolicyViolation {
				t.Fatalf("close status %v, want 1008", got)
			}
		})
	}
}

func TestOrigin(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	gw := harness.StartN(t, 1, srv.URL(), mmConfig(func(c *gateway.Config) {
		c.Middleman.AllowedOrigins = []string{"https://app.example", "*.trusted.example"}
	}))[0]
	host := strings.TrimPrefix(gw.URL(), "http://")
	for origin, ok := range map[string]bool{
		"":                          true,
		"http://" + host:            true,
		"https://app.example":       true,
		"http://app.example":        false,
		"https://x.trusted.example": true,
		"https://evil.example":      false,
		"null":                      false,
	} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		ws, resp, err := websocket.Dial(ctx, wsURL(gw.URL()), &websocket.DialOptions{HTTPHeader: h})
		cancel()
		if ok != (err == nil) {
			t.Errorf("origin %q: err %v, want allowed=%v", origin, err, ok)
		}
		if err == nil {
			_ = ws.CloseNow()
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: response %v, want 403", origin, resp)
		}
	}
	any := harness.StartN(t, 1, srv.URL(), mmConfig(func(c *gateway.Config) {
		c.Middleman.AllowedOrigins = []string{"*"}
	}))[0]
	ws := rawDial(t, any.URL(), http.Header{"Origin": []string{"https://anywhere.example"}})
	_ = ws.CloseNow()
}

func TestPubSubAcrossGateways(t *testing.T) {
	a, b := twoGateways(t, nil)
	svc := dial(t, a, svcKey)
	cli := dial(t, b, cliKey)

	svc.send("SUB", "chat", "")
	svc.sync()
	cli.send("PUB", "chat", "refused")
	cli.expectError("Not trusted PUB chat")

	svc.send("EPUB", "chat", "")
	svc.sync()
	cli.send("PUB", "chat", "hello\n.dotted\n", "Cid", "forged", "Uid", "forged", "X-App", "1")
	f := svc.expect("PUB", "chat", "hello\n.dotted\n")
	if f.Get("Cid") != cli.cid || f.Get("Uid") != "" || f.Get("X-App") != "1" {
		t.Fatalf("relayed headers %+v (cli %s)", f.Header, cli.cid)
	}
	if _, ok := f.Lookup("Uid"); !ok {
		t.Fatal("Uid header missing")
	}

	// SUB by an untrusted client needs ESUB; the sender gets its own PUB.
	cli.send("SUB", "chat", "")
	cli.expectError("Not trusted SUB chat")
	svc.send("ESUB", "chat", "")
	svc.sync()
	cli.send("SUB", "chat", "")
	cli.sync()
	svc.send("PUB", "chat", "to all")
	svc.expect("PUB", "chat", "to all")
	cli.expect("PUB", "chat", "to all")

	// UNS stops delivery; the refused PUB had no effect.
	cli.send("UNS", "chat", "")
	cli.sync()
	svc.send("PUB", "chat", "after uns")
	svc.expect("PUB", "chat", "after uns")
	cli.expectQuiet()
}

func TestPrivateKeyAndSuper(t *testing.T) {
	a, b := twoGateways(t, nil)
	svc := dial(t, a, svcKey)
	cli := dial(t, b, cliKey)
	local := dial(t, a, cliKey)
	sup := dial(t, a, superKey)
	supB := dial(t, b, superKey)

	svc.send("PUB", "MSG:"+cli.cid, "just you")
	cli.expect("PUB", "MSG:"+cli.cid, "just you")
	svc.send("PUB", "MSG:"+local.cid, "local you")
	local.expect("PUB", "MSG:"+local.cid, "local you")
	for _, s := range []*client{sup, supB} {
		s.expect("PUB", "MSG:"+cli.cid, "just you")
		s.expect("PUB", "MSG:"+local.cid, "local you")
	}
	svc.send("PUB", "nobody listens", "x")
	sup.expect("PUB", "nobody listens", "x")
	supB.expect("PUB", "nobody listens", "x")
	// A super key is trusted, SUB is a no-op for it (no duplicates), and
	// its own PUB reaches it once.
	sup.send("SUB", "k", "")
	sup.send("PUB", "k", "once")
	sup.expect("PUB", "k", "once")
	supB.expect("PUB", "k", "once")
	sup.expectQuiet()
	cli.expectQuiet()
	local.expectQuiet()
	svc.expectQuiet()
}

func TestSubjectInjection(t *testing.T) {
	a, b := twoGateways(t, nil)
	pub := dial(t, a, svcKey)
	keys := []string{"a", "a.b", "a.*", "a.>", "*", ">", "a b", " a", "ключ", "a\tb", "MSG:x", "sb.mm.pub.a", "_2E"}
	subs := map[string]*client{}
	for i, k := range keys {
		gw := a
		if i%2 == 1 {
			gw = b
		}
		c := dial(t, gw, svcKey)
		c.send("SUB", k, "")
		c.sync()
		subs[k] = c
	}
	for _, k := range keys {
		pub.send("PUB", k, "for "+k)
	}
	for _, k := range keys {
		c := subs[k]
		c.expect("PUB", k, "for "+k)
		c.expectQuiet()
	}
}

func TestRequestResponseAcrossGateways(t *testing.T) {
	a, b := twoGateways(t, nil)
	svc := dial(t, a, svcKey)
	cli := dial(t, b, cliKey)

	// Trust comes before the responder check.
	cli.send("REQ", "calc", "1+1")
	cli.expectError("Not trusted REQ calc")
	trusted := dial(t, b, svc2Key)
	trusted.send("REQ", "calc", "1+1")
	trusted.expectError("No responder for REQ calc")

	svc.send("EREQ", "calc", "")
	svc.sync()
	cli.send("REQ", "calc", "1+1", "Rid", "forged", "X-Corr", "7")
	req := svc.expect("REQ", "calc", "1+1")
	rid := req.Get("Rid")
	if rid == "" || rid == "forged" || req.Get("Cid") != cli.cid || req.Get("X-Corr") != "7" {
		t.Fatalf("REQ headers %+v", req.Header)
	}
	svc.send("RES", "calc", "2", "Rid", rid, "X-Corr", "7")
	res := cli.expect("RES", "calc", "2")
	if _, ok := res.Lookup("Rid"); ok || res.Get("Cid") != svc.cid || res.Get("X-Corr") != "7" {
		t.Fatalf("RES headers %+v", res.Header)
	}
	// Answered at most once: the Rid now names no waiting request.
	svc.send("RES", "calc", "again", "Rid", rid)
	svc.expectError("Unknown Rid RES calc")
	cli.expectQuiet()

	// RES refusals.
	svc.send("RES", "calc", "x")
	svc.expectError("Missing header RES calc")
	svc.send("RES", "calc", "x", "Rid", "not-a-rid")
	svc.expectError("Unknown Rid RES calc")
	cli.send("RES", "calc", "x", "Rid", rid)
	cli.expectError("Not trusted RES calc")
}

func TestRequestLoadBalancing(t *testing.T) {
	a, b := twoGateways(t, nil)
	s1 := dial(t, a, svcKey)
	s2 := dial(t, b, svcKey)
	s3 := dial(t, b, svcKey) // two responders on b: local round-robin
	for _, s := range []*client{s1, s2, s3} {
		s.send("EREQ", "work", "")
		s.sync()
	}
	cli := dial(t, a, cliKey)
	const n = 60
	for i := range n {
		cli.send("REQ", "work", fmt.Sprint(i))
	}
	counts := map[*client]int{}
	deadline := time.Now().Add(ioTimeout)
	for total := 0; total < n; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests arrived", total, n)
		}
		for _, s := range []*client{s1, s2, s3} {
			for _, f := range s.sync() {
				if f.Cmd != "REQ" {
					t.Fatalf("responder got %s %q", f.Cmd, f.Key)
				}
				counts[s]++
				total++
				s.send("RES", "work", "done "+string(f.Body), "Rid", f.Get("Rid"))
			}
		}
	}
	got := map[string]bool{}
	for range n {
		got[string(cli.next().Body)] = true
	}
	for i := range n {
		if !got[fmt.Sprint("done ", i)] {
			t.Errorf("no answer for request %d", i)
		}
	}
	if counts[s1] == 0 || counts[s2] == 0 || counts[s3] == 0 {
		t.Fatalf("load not spread: gateway a %d, gateway b %d + %d", counts[s1], counts[s2], counts[s3])
	}
	t.Logf("requests per responder: a=%d b1=%d b2=%d", counts[s1], counts[s2], counts[s3])
}
