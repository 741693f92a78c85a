package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestMiddlemanPubLiteralKeys(t *testing.T) {
	cases := []struct{ key, want string }{
		{"news", "sb.mm.pub.news"},
		{"a.>", "sb.mm.pub.a_2E_3E"},
		{"*", "sb.mm.pub._2A"},
		{">", "sb.mm.pub._3E"},
		{"a b", "sb.mm.pub.a_20b"},
		{"MSG:abc-1", "sb.mm.pub.MSG_3Aabc-1"},
		{"ключ", "sb.mm.pub._D0_BA_D0_BB_D1_8E_D1_87"},
	}
	seen := map[string]string{}
	for _, c := range cases {
		got, err := MiddlemanPub(c.key)
		if err != nil || got != c.want {
			t.Errorf("MiddlemanPub(%q) = %q, %v; want %q", c.key, got, err, c.want)
		}
		if strings.Count(got, ".") != 3 || strings.ContainsAny(got[len("sb.mm.pub."):], "*> ") {
			t.Errorf("MiddlemanPub(%q) = %q is not one literal token", c.key, got)
		}
		back, err := ParseMiddlemanPub(got)
		if err != nil || back != c.key {
			t.Errorf("ParseMiddlemanPub(%q) = %q, %v", got, back, err)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("%q and %q share %q", prev, c.key, got)
		}
		seen[got] = c.key
		req, err := MiddlemanReq(c.key)
		if err != nil || req != "sb.mm.req."+got[len("sb.mm.pub."):] {
			t.Errorf("MiddlemanReq(%q) = %q, %v", c.key, req, err)
		}
	}
	if _, err := MiddlemanPub(""); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty key: %v", err)
	}
	if MiddlemanPubAll() != "sb.mm.pub.*" {
		t.Errorf("MiddlemanPubAll = %q", MiddlemanPubAll())
	}
	for _, s := range []string{"sb.mm.pub.a.b", "sb.mm.req.a", "sb.mm.pub._", "sb.mm.pub."} {
		if _, err := ParseMiddlemanPub(s); err == nil {
			t.Errorf("ParseMiddlemanPub(%q) accepted", s)
		}
	}
}

func TestMiddlemanIDs(t *testing.T) {
	cid := MiddlemanCID("GW1abc", 42)
	if cid != "GW1abc-42" {
		t.Fatalf("cid = %q", cid)
	}
	gw, n, err := ParseMiddlemanCID(cid)
	if err != nil || gw != "GW1abc" || n != 42 {
		t.Fatalf("ParseMiddlemanCID = %q %d %v", gw, n, err)
	}
	rid := MiddlemanRID("GW1abc", 42, 7)
	gw, n, seq, err := ParseMiddlemanRID(rid)
	if err != nil || gw != "GW1abc" || n != 42 || seq != 7 {
		t.Fatalf("ParseMiddlemanRID(%q) = %q %d %d %v", rid, gw, n, seq, err)
	}
	for _, bad := range []string{"", "-1", "gw-", "gw-01", "gw--1", "g.w-1", "g*-1", "gw-1x", "gw-1-2", "gw -1", "gw-18446744073709551616"} {
		if _, _, err := ParseMiddlemanCID(bad); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseMiddlemanCID(%q) err = %v", bad, err)
		}
	}
	for _, bad := range []string{"", "gw-1", "gw-1-", "gw-1-x", "gw-1-01", "g>-1-2", "gw-1-2-3"} {
		if _, _, _, err := ParseMiddlemanRID(bad); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseMiddlemanRID(%q) err = %v", bad, err)
		}
	}
}

func TestMiddlemanControl(t *testing.T) {
	all, err := MiddlemanGatewayAll("G1")
	if err != nil || all != "sb.mm.gw.G1.>" {
		t.Fatalf("MiddlemanGatewayAll = %q %v", all, err)
	}
	conn, _ := MiddlemanConn("G1", 3)
	reply, _ := MiddlemanReply("G1", 3, 9)
	if conn != "sb.mm.gw.G1.c.3" || reply != "sb.mm.gw.G1.r.3.9" {
		t.Fatalf("conn %q reply %q", conn, reply)
	}
	c, err := ParseMiddlemanControl("G1", conn)
	if err != nil || c.Reply || c.Conn != 3 {
		t.Fatalf("parse conn: %+v %v", c, err)
	}
	c, err = ParseMiddlemanControl("G1", reply)
	if err != nil || !c.Reply || c.Conn != 3 || c.Seq != 9 {
		t.Fatalf("parse reply: %+v %v", c, err)
	}
	for _, bad := range []string{"sb.mm.gw.G2.c.3", "sb.mm.gw.G1.c", "sb.mm.gw.G1.c.x", "sb.mm.gw.G1.r.3", "sb.mm.gw.G1.x.3", "sb.mm.gw.G1.c.3.4"} {
		if _, err := ParseMiddlemanControl("G1", bad); err == nil {
			t.Errorf("ParseMiddlemanControl(%q) accepted", bad)
		}
	}
	for _, gw := range []string{"", "a.b", "*", ">", "a b"} {
		if _, err := MiddlemanGatewayAll(gw); err == nil {
			t.Errorf("MiddlemanGatewayAll(%q) accepted", gw)
		}
		if _, err := MiddlemanConn(gw, 1); err == nil {
			t.Errorf("MiddlemanConn(%q) accepted", gw)
		}
	}
}

func TestMiddlemanTrustKey(t *testing.T) {
	for _, key := range []string{"a", "a.>", "*", "x y", "é"} {
		k, err := MiddlemanTrustKey("EPUB", key)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(k, ".") != 1 || strings.ContainsAny(k, "*> ") {
			t.Errorf("MiddlemanTrustKey(EPUB, %q) = %q", key, k)
		}
		cmd, back, err := ParseMiddlemanTrustKey(k)
		if err != nil || cmd != "EPUB" || back != key {
			t.Errorf("ParseMiddlemanTrustKey(%q) = %q %q %v", k, cmd, back, err)
		}
	}
	if _, err := MiddlemanTrustKey("E.PUB", "a"); err == nil {
		t.Error("bad command accepted")
	}
	if _, _, err := ParseMiddlemanTrustKey("EPUB"); err == nil {
		t.Error("key without token accepted")
	}
}
