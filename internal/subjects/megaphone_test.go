package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestMegaphoneSubjects(t *testing.T) {
	id := "abcDEF0123456789abcDEF0123456789abcDEF0123456789ab"
	cases := []struct {
		fn   func(string) (string, error)
		want string
	}{
		{MegaphoneEvents, "sb.mp.ev." + id},
		{MegaphoneWake, "sb.mp.wake." + id},
		{MegaphoneRoom, "sb.mp.room." + id},
	}
	for _, c := range cases {
		got, err := c.fn(id)
		if err != nil || got != c.want {
			t.Fatalf("got %q, %v; want %q", got, err, c.want)
		}
		back, err := ChannelFromMegaphoneSubject(got)
		if err != nil || back != id {
			t.Fatalf("ChannelFromMegaphoneSubject(%q) = %q, %v", got, back, err)
		}
	}
	if got := MegaphoneEventsAll(); got != "sb.mp.ev.*" {
		t.Fatalf("MegaphoneEventsAll = %q", got)
	}
	if got := MegaphoneGone(); got != "sb.mp.gone" {
		t.Fatalf("MegaphoneGone = %q", got)
	}
}

func TestMegaphoneSubjectsEscapeSyntax(t *testing.T) {
	for _, bad := range []string{"a.b", "*", ">", "a b"} {
		s, err := MegaphoneEvents(bad)
		if err != nil {
			t.Fatal(err)
		}
		if !IsValidToken(s[len("sb.mp.ev."):]) {
			t.Fatalf("MegaphoneEvents(%q) = %q", bad, s)
		}
		back, err := ChannelFromMegaphoneSubject(s)
		if err != nil || back != bad {
			t.Fatalf("round trip of %q = %q, %v", bad, back, err)
		}
	}
	if _, err := MegaphoneEvents(""); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty channel: %v", err)
	}
	for _, s := range []string{"sb.mp.ev", "sb.mp.x.a", "sb.mp.ev.a.b", "xx.mp.ev.a", "sb.mp.ev.a_2"} {
		if _, err := ChannelFromMegaphoneSubject(s); err == nil {
			t.Fatalf("ChannelFromMegaphoneSubject(%q) accepted", s)
		}
	}
}

func TestMegaphoneHold(t *testing.T) {
	if s, err := MegaphoneHold("gw1"); err != nil || s != "sb.mp.hold.gw1" {
		t.Fatalf("MegaphoneHold = %q, %v", s, err)
	}
	// A claim's value is read from NATS: whatever it holds stays one
	// literal token, or is refused.
	for _, bad := range []string{"a.b", "*", ">", "a b", "x\r\nPUB y"} {
		s, err := MegaphoneHold(bad)
		if err != nil || !IsValidToken(s[len("sb.mp.hold."):]) {
			t.Fatalf("MegaphoneHold(%q) = %q, %v", bad, s, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("a", MaxNameLen+1)} {
		if _, err := MegaphoneHold(bad); err == nil {
			t.Fatalf("MegaphoneHold of %d bytes accepted", len(bad))
		}
	}
}

func TestKVSubjects(t *testing.T) {
	s, err := KVKeySubject(MegaphoneChannelsBucket, "abc")
	if err != nil || s != "$KV.SB_MP_CHANNELS.abc" {
		t.Fatalf("KVKeySubject = %q, %v", s, err)
	}
	k, err := KeyFromKVSubject(MegaphoneChannelsBucket, s)
	if err != nil || k != "abc" {
		t.Fatalf("KeyFromKVSubject = %q, %v", k, err)
	}
	for _, bad := range []string{"$KV.OTHER.abc", "$KV.SB_MP_CHANNELS.a.b", "$KV.SB_MP_CHANNELS."} {
		if _, err := KeyFromKVSubject(MegaphoneChannelsBucket, bad); err == nil {
			t.Fatalf("KeyFromKVSubject(%q) accepted", bad)
		}
	}
	if got := KVAllKeys(MegaphoneChannelsBucket); got != "$KV.SB_MP_CHANNELS.>" {
		t.Fatalf("KVAllKeys = %q", got)
	}
	if got := KVStream(MegaphoneChannelsBucket); got != "KV_SB_MP_CHANNELS" {
		t.Fatalf("KVStream = %q", got)
	}
	if k, err := MegaphoneKVKey("a.b"); err != nil || k != "a_2Eb" {
		t.Fatalf("MegaphoneKVKey = %q, %v", k, err)
	}
}

func TestJSStreamPurge(t *testing.T) {
	if got := JSStreamPurge("S"); got != "$JS.API.STREAM.PURGE.S" {
		t.Fatalf("JSStreamPurge = %q", got)
	}
}
