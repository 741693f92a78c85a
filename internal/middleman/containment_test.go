package middleman_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/natstest"
)

// These tests cover SPEC §0 "Trust boundaries and containment" for the
// middleman: bounded keys, request ids no client can guess, headers that
// cannot be smuggled, and text that is UTF-8.

// allCommands are the commands a client can send, plus one unknown.
var allCommands = []string{"PUB", "SUB", "UNS", "REQ", "RES", "EPUB", "ESUB", "EREQ", "INT", "FOO"}

// longKeys maps keys over the bound to the start the error echoes.
var longKeys = map[string]string{
	strings.Repeat("x", middleman.MaxKeyLen+1): strings.Repeat("x", 32) + "…",
	strings.Repeat("k", 1<<10):                 strings.Repeat("k", 32) + "…",
	strings.Repeat("x", 5000):                  strings.Repeat("x", 32) + "…",
	strings.Repeat("y", 70<<10):                strings.Repeat("y", 32) + "…",
	strings.Repeat("%2E", 400):                 strings.Repeat("%2E", 10) + "%2…",
	strings.Repeat("%", 300):                   strings.Repeat("%", 32) + "…",
	strings.Repeat("é", 200):                   strings.Repeat("é", 16) + "…",
	"a" + strings.Repeat("é", 200):             "a" + strings.Repeat("é", 15) + "…", // cut at a rune boundary
	"MSG:" + strings.Repeat("_25", 100):        "MSG:" + strings.Repeat("_25", 9) + "_…",
}

// closedConns lists the connections the nats-server closed, with reasons.
func closedConns(t *testing.T, srv *natstest.Server) []string {
	t.Helper()
	cz, err := srv.Connz(&server.ConnzOptions{State: server.ConnClosed})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cz.Conns {
		out = append(out, c.Name+": "+c.Reason)
	}
	return out
}

// TestLongKeysRefused sends every command with keys over the bound, from a
// trusted and an untrusted connection: each gets `PUB ERROR Key too long
// CMD <start>…`, nothing is published, the connections stay open and the
// gateways' NATS connections survive (round trips work, none was closed).
func TestLongKeysRefused(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	gws := harness.StartN(t, 2, srv.URL(), mmConfig(nil))
	a, b := gws[0], gws[1]
	svc := dial(t, a, svcKey)
	cli := dial(t, b, cliKey)
	sup := dial(t, b, superKey)
	clients := srv.NumClients()

	for _, c := range []*client{svc, cli} {
		for key, echo := range longKeys {
			for _, cmd := range allCommands {
				c.send(cmd, key, "body", "Rid", cli.cid+"-1", "Forcid", cli.cid, "Setuid", "u")
				raw := c.readRaw()
				if !utf8.ValidString(raw) {
					t.Fatalf("%s of %d bytes: error frame is not UTF-8: %q", cmd, len(key), raw)
				}
				f, err := middleman.Parse([]byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				if want := "Key too long " + cmd + " " + echo; f.Cmd != "PUB" || f.Key != "ERROR" || string(f.Body) != want {
					t.Fatalf("%s of %d bytes: got %s %s %q, want PUB ERROR %q", cmd, len(key), f.Cmd, f.Key, f.Body, want)
				}
			}
		}
	}
	sup.expectQuiet() // nothing was published
	if closed := closedConns(t, srv); len(closed) != 0 || srv.NumClients() != clients {
		t.Fatalf("nats connections closed: %q (clients %d, were %d)", closed, srv.NumClients(), clients)
	}

	// The longest keys allowed, of the bytes that escape worst, work end to
	// end across the gateways, and so does a plain one.
	for _, key := range []string{strings.Repeat("%", middleman.MaxKeyLen), strings.Repeat(".", middleman.MaxKeyLen), "after"} {
		roundTrips(t, svc, cli, key)
	}
	if closed := closedConns(t, srv); len(closed) != 0 {
		t.Fatalf("nats connections closed: %q", closed)
	}
}

// roundTrips enables key for cli, then does PUB/SUB and REQ/RES between
// the two across their gateways.
func roundTrips(t *testing.T, svc, cli *client, key string) {
	t.Helper()
	for _, cmd := range []string{"SUB", "EPUB", "EREQ"} {
		svc.send(cmd, key, "")
	}
	svc.expectQuiet()
	cli.send("PUB", key, "pub")
	svc.expect("PUB", key, "pub")
	cli.send("REQ", key, "req")
	rid := svc.expect("REQ", key, "req").Get("Rid")
	svc.send("RES", key, "res", "Rid", rid)
	cli.expect("RES", key, "res")
}

func TestLongHandshakeKeyRefused(t *testing.T) {
	gw := harness.StartEmbedded(t, mmConfig(nil))
	for _, key := range []string{strings.Repeat("s", middleman.MaxKeyLen+1), strings.Repeat("s", 5000),
		strings.Repeat("%", 70<<10), svcKey + strings.Repeat(" x", 3000)} {
		ws := rawDial(t, gw.URL(), nil)
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		err := ws.Write(ctx, websocket.MessageText, []byte(key))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := closeStatus(t, ws); got != websocket.StatusPolicyViolation {
			t.Fatalf("key of %d bytes: close status %v, want 1008", len(key), got)
		}
	}
	dial(t, gw, svcKey).expectQuiet()
}

// TestForgedRESRefused has trusted connections, on the requester's gateway
// and on another, answer a request they never received, with the Rid the
// counter scheme would give and with the real Rid's secret replaced. None
// reaches the requester; each forger hears "Unknown Rid".
func TestForgedRESRefused(t *testing.T) {
	a, b := twoGateways(t, nil)
	svc := dial(t, a, svcKey)
	cli := dial(t, b, cliKey)
	svc.send("EREQ", "calc", "")
	svc.sync()
	forgers := []struct {
		c     *client
		local bool // on the requester's gateway: answered at once
	}{{dial(t, b, svc2Key), true}, {dial(t, a, svc2Key), false}}
	for seq, forger := range forgers {
		cli.send("REQ", "calc", "q")
		rid := svc.expect("REQ", "calc", "q").Get("Rid")
		i := strings.LastIndex(rid, "-")
		wrong := rid[:i+1] + strings.Repeat("A", max(len(rid)-i-1, 26))
		guesses := []string{
			cli.cid + "-" + string(rune('1'+seq)), // the counter scheme
			wrong,                                 // right format, wrong secret
			wrong + "234", rid + "A", rid[:i], rid + "-x", rid[:i+1],
		}
		for _, guess := range guesses {
			forger.c.send("RES", "calc", "forged", "Rid", guess)
			if !forger.local {
				forger.c.expectError("Unknown Rid RES calc")
				continue
			}
			// The forger's frames are handled in order: what its RES did
			// to the requester is queued before the probe is answered.
			got := forger.c.sync()
			cli.expectQuiet()
			if len(got) != 1 || string(got[0].Body) != "Unknown Rid RES calc" {
				t.Fatalf("forged RES with Rid %q: forger got %d frames, want Unknown Rid RES calc", guess, len(got))
			}
		}
		cli.expectQuiet()
		if secret := rid[i+1:]; len(secret) < 26 || !strings.HasPrefix(rid, cli.cid+"-") {
			t.Fatalf("Rid %q: want <cid>-<seq>-<secret of 128 bits or more>", rid)
		}
		svc.send("RES", "calc", "real", "Rid", rid)
		cli.expect("RES", "calc", "real")
		// Answered once: the real Rid is now unknown too.
		svc.send("RES", "calc", "again", "Rid", rid)
		svc.expectError("Unknown Rid RES calc")
		cli.expectQuiet()
	}
}

// TestPubDropsRid: a Rid in a PUB is not relayed, so no subscriber can be
// made to answer a request that does not exist.
func TestPubDropsRid(t *testing.T) {
	a, b := twoGateways(t, nil)
	sub := dial(t, a, svcKey)
	pub := dial(t, b, svcKey)
	cli := dial(t, b, cliKey)
	sub.send("SUB", "k", "")
	sub.send("EPUB", "k", "")
	sub.sync()
	for _, c := range []*client{pub, cli, sub} {
		c.writeRaw("PUB k\r\nRid: " + c.cid + "-1-AAAA\r\nrid: x\r\nX-Keep: 1\r\n\r\nbody\r\n.\r\n")
		f := sub.expect("PUB", "k", "body")
		if _, ok := f.Lookup("Rid"); ok || f.Get("X-Keep") != "1" || f.Get("Cid") != c.cid {
			t.Fatalf("relayed headers %+v", f.Header)
		}
	}
	pub.send("PUB", "MSG:"+sub.cid, "private", "Rid", "x")
	if f := sub.expect("PUB", "MSG:"+sub.cid, "private"); f.Get("Rid") != "" {
		t.Fatalf("relayed headers %+v", f.Header)
	}
	sub.expectQuiet()
}

// TestBareCRRefused: a CR that does not end a line would let a lenient
// reader of the relayed frame see a header the server never checked.
func TestBareCRRefused(t *testing.T) {
	a, b := twoGateways(t, nil)
	sub := dial(t, a, svcKey)
	pub := dial(t, b, svcKey)
	sub.send("SUB", "k", "")
	sub.sync()
	for raw, want := range map[string]string{
		"PUB k\r\nX-A: v\rRid: forged\r\n\r\nb\r\n.\r\n": "Malformed frame: bare CR in header line",
		"PUB k\r\nX-A: v\r\r\n\r\nb\r\n.\r\n":            "Malformed frame: bare CR in header line",
		"PUB k\nX-A:\rv\n\nb\n.\n":                       "Malformed frame: bare CR in header line",
		"PUB k\rRid: forged\r\n\r\nb\r\n.\r\n":           "Malformed frame: bare CR in command line",
	} {
		pub.writeRaw(raw)
		pub.expectError(want)
	}
	sub.expectQuiet()
	// A CR inside the body is data.
	pub.send("PUB", "k", "a\rb")
	sub.expect("PUB", "k", "a\rb")
}

// TestInvalidUTF8Closes1007: a text message that is not UTF-8 closes the
// connection with 1007 (RFC 6455 §8.1), the key message included.
func TestInvalidUTF8Closes1007(t *testing.T) {
	gw := harness.StartEmbedded(t, mmConfig(nil))
	for _, bad := range []string{"\xff", "PUB k\r\n\r\nok \xc3\x28\r\n.\r\n", "SUB \xed\xa0\x80", "PUB k\r\nX: \xe2\x82\r\n\r\n"} {
		c := dial(t, gw, svcKey)
		c.send("SUB", "ключ", "")
		c.send("PUB", "ключ", "π ✓")
		c.expect("PUB", "ключ", "π ✓")
		c.writeRaw(bad)
		if got := closeStatus(t, c.ws); got != websocket.StatusInvalidFramePayloadData {
			t.Fatalf("%q: close status %v, want 1007", bad, got)
		}
	}
	ws := rawDial(t, gw.URL(), nil)
	if err := ws.Write(context.Background(), websocket.MessageText, []byte(svcKey+"\xff")); err != nil {
		t.Fatal(err)
	}
	if got := closeStatus(t, ws); got != websocket.StatusInvalidFramePayloadData {
		t.Fatalf("key: close status %v, want 1007", got)
	}
	dial(t, gw, svcKey).expectQuiet()
}
