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
	req := MiddlemanRequest{Gateway: "GW1abc", Conn: 42, Seq: 7, Secret: "S3cr3t"}
	rid := req.RID()
	if rid != "GW1abc-42-7-S3cr3t" {
		t.Fatalf("rid = %q", rid)
	}
	got, err := ParseMiddlemanRID(rid)
	if err != nil || got != req {
		t.Fatalf("ParseMiddlemanRID(%q) = %+v %v", rid, got, err)
	}
	for _, bad := range []string{"", "-1", "gw-", "gw-01", "gw--1", "g.w-1", "g*-1", "gw-1x", "gw-1-2", "gw -1", "gw-18446744073709551616"} {
		if _, _, err := ParseMiddlemanCID(bad); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseMiddlemanCID(%q) err = %v", bad, err)
		}
	}
	long := strings.Repeat("s", 65)
	for _, bad := range []string{"", "gw-1", "gw-1-2", "gw-1-2-", "gw-1-x-s", "gw-1-01-s", "g>-1-2-s", "gw-1-2-3-4",
		"gw-1-2-s.x", "gw-1-2-*", "gw-1-2->", "gw-1-2-s s", "gw-1-2-" + long, "gw-1--2-s", strings.Repeat("-", 1<<20)} {
		if _, err := ParseMiddlemanRID(bad); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseMiddlemanRID(%.40q) err = %v", bad, err)
		}
	}
	if _, err := (MiddlemanRequest{Gateway: "gw", Conn: 1, Seq: 1, Secret: "a.b"}).Reply(); !errors.Is(err, ErrBadID) {
		t.Errorf("Reply with secret a.b: %v", err)
	}
}

func TestMiddlemanControl(t *testing.T) {
	all, err := MiddlemanGatewayAll("G1")
	if err != nil || all != "sb.mm.gw.G1.>" {
		t.Fatalf("MiddlemanGatewayAll = %q %v", all, err)
	}
	conn, _ := MiddlemanConn("G1", 3)
	reply, _ := MiddlemanRequest{Gateway: "G1", Conn: 3, Seq: 9, Secret: "Sx"}.Reply()
	if conn != "sb.mm.gw.G1.c.3" || reply != "sb.mm.gw.G1.r.3.9.Sx" {
		t.Fatalf("conn %q reply %q", conn, reply)
	}
	c, err := ParseMiddlemanControl("G1", conn)
	if err != nil || c.Reply || c.Conn != 3 {
		t.Fatalf("parse conn: %+v %v", c, err)
	}
	c, err = ParseMiddlemanControl("G1", reply)
	if err != nil || !c.Reply || c.Conn != 3 || c.Seq != 9 || c.Secret != "Sx" {
		t.Fatalf("parse reply: %+v %v", c, err)
	}
	for _, bad := range []string{"sb.mm.gw.G2.c.3", "sb.mm.gw.G1.c", "sb.mm.gw.G1.c.x", "sb.mm.gw.G1.r.3",
		"sb.mm.gw.G1.r.3.9", "sb.mm.gw.G1.r.3.9.S.x", "sb.mm.gw.G1.r.3.9.*", "sb.mm.gw.G1.r.3.09.S",
		"sb.mm.gw.G1.x.3", "sb.mm.gw.G1.c.3.4"} {
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

// FuzzMiddlemanIDs: any string that parses as a cid or a Rid spells it
// the one way the builders do, and yields control subjects under
// sb.mm.gw.<gw>. made of alphanumeric tokens only (decimal counters), which
// the gateway parses back to the same ids. So no id a client or another
// gateway sends can aim a gateway's publish anywhere else.
func FuzzMiddlemanIDs(f *testing.F) {
	for _, s := range []string{"GW1-42", "GW1-42-7-S3cr3t", "gw-1-2", "a.b-1-1-S", "gw-1-2-s.x", "gw->-1-2", "gw-1-2-*", "g-0-0-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if gw, n, err := ParseMiddlemanCID(id); err == nil {
			if MiddlemanCID(gw, n) != id {
				t.Fatalf("cid %q spelled %q", id, MiddlemanCID(gw, n))
			}
			subj, err := MiddlemanConn(gw, n)
			if err != nil {
				t.Fatalf("MiddlemanConn(%q): %v", id, err)
			}
			checkControl(t, gw, subj, []string{"c", "#"})
			c, err := ParseMiddlemanControl(gw, subj)
			if err != nil || c.Reply || c.Conn != n {
				t.Fatalf("ParseMiddlemanControl(%q) = %+v %v", subj, c, err)
			}
		}
		if r, err := ParseMiddlemanRID(id); err == nil {
			if r.RID() != id {
				t.Fatalf("rid %q spelled %q", id, r.RID())
			}
			subj, err := r.Reply()
			if err != nil {
				t.Fatalf("Reply(%q): %v", id, err)
			}
			checkControl(t, r.Gateway, subj, []string{"r", "#", "#", "a"})
			c, err := ParseMiddlemanControl(r.Gateway, subj)
			if err != nil || !c.Reply || c.Conn != r.Conn || c.Seq != r.Seq || c.Secret != r.Secret {
				t.Fatalf("ParseMiddlemanControl(%q) = %+v %v", subj, c, err)
			}
		}
	})
}

// checkControl checks that subj is sb.mm.gw.<gw>. followed by tokens of
// the given shapes: a literal, "#" (decimal) or "a" (alphanumeric).
func checkControl(t *testing.T, gw, subj string, shape []string) {
	t.Helper()
	rest, ok := strings.CutPrefix(subj, "sb.mm.gw."+gw+".")
	if !ok || !isAlnum(gw) || len(subj) > MaxSubjectLen {
		t.Fatalf("subject %q not under sb.mm.gw.%s.", subj, gw)
	}
	toks := strings.Split(rest, ".")
	if len(toks) != len(shape) {
		t.Fatalf("subject %q: %d tokens after the gateway, want %d", subj, len(toks), len(shape))
	}
	for i, tok := range toks {
		ok := false
		switch shape[i] {
		case "#":
			ok = tok != "" && strings.Trim(tok, "0123456789") == ""
		case "a":
			ok = isAlnum(tok)
		default:
			ok = tok == shape[i]
		}
		if !ok {
			t.Fatalf("subject %q: token %q is not %q", subj, tok, shape[i])
		}
	}
}

func isAlnum(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
