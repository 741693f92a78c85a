package subjects

import (
	"slices"
	"strings"
	"testing"
)

func TestRelaySubjects(t *testing.T) {
	cases := []struct{ name, req, inbox, svc string }{
		{"api", "sb.relay.api", "sb.relay.api.in", "sb-relay-api"},
		{"a.>", "sb.relay.a_2E_3E", "sb.relay.a_2E_3E.in", "sb-relay-a_2E_3E"},
		{"my api", "sb.relay.my_20api", "sb.relay.my_20api.in", "sb-relay-my_20api"},
		{"in", "sb.relay.in", "sb.relay.in.in", "sb-relay-in"},
	}
	for _, c := range cases {
		req, err := RelayRequest(c.name)
		if err != nil || req != c.req {
			t.Errorf("RelayRequest(%q) = %q, %v; want %q", c.name, req, err, c.req)
		}
		in, err := RelayInbox(c.name)
		if err != nil || in != c.inbox {
			t.Errorf("RelayInbox(%q) = %q, %v; want %q", c.name, in, err, c.inbox)
		}
		svc, err := RelayService(c.name)
		if err != nil || svc != c.svc {
			t.Errorf("RelayService(%q) = %q, %v; want %q", c.name, svc, err, c.svc)
		}
		if cancel, err := RelayCancel(c.name); err != nil || cancel != c.inbox+".cancel" {
			t.Errorf("RelayCancel(%q) = %q, %v", c.name, cancel, err)
		}
		if back, ok := RelayUpstreamFromService(svc); !ok || back != c.name {
			t.Errorf("RelayUpstreamFromService(%q) = %q, %v", svc, back, ok)
		}
	}
	for _, bad := range []string{"", "sb-relay-", "other-api", "sb-relay-a.b", "sb-relay-_41"} {
		if _, ok := RelayUpstreamFromService(bad); ok {
			t.Errorf("RelayUpstreamFromService(%q) accepted", bad)
		}
	}
	if _, err := RelayRequest(""); err == nil {
		t.Error("RelayRequest(\"\") accepted")
	}
	if _, err := RelayInbox(""); err == nil {
		t.Error("RelayInbox(\"\") accepted")
	}
}

// TestRelayExchange: an exchange's subject lies in its side's space, which
// lies in the upstream's inbox, so CheckPeer accepts it under both.
func TestRelayExchange(t *testing.T) {
	in, _ := RelayInbox("a.b")
	space := RelayExchangeSpace(in, "Xy12")
	if space != "sb.relay.a_2Eb.in.Xy12" {
		t.Errorf("RelayExchangeSpace = %q", space)
	}
	subj := RelayExchange(space, "7")
	if subj != "sb.relay.a_2Eb.in.Xy12.7" {
		t.Errorf("RelayExchange = %q", subj)
	}
	if all := RelayExchangeAll(space); all != "sb.relay.a_2Eb.in.Xy12.*" {
		t.Errorf("RelayExchangeAll = %q", all)
	}
	for _, prefix := range []string{in, space} {
		if err := CheckPeer(subj, prefix); err != nil {
			t.Errorf("CheckPeer(%q, %q): %v", subj, prefix, err)
		}
	}
	if RelayQueue != "sb-relay" {
		t.Errorf("RelayQueue = %q: agents of different versions would not share the queue group", RelayQueue)
	}
}

// TestRelayNamesStayInTheirSpace proves one upstream's subjects never fall
// under another's: the open subject has exactly three tokens and the inbox
// prefix four, whatever the name.
func TestRelayNamesStayInTheirSpace(t *testing.T) {
	for _, name := range []string{"a", "a.b", "a.*", ">", "a b", "a.in", "x\x00"} {
		req, _ := RelayRequest(name)
		in, _ := RelayInbox(name)
		if n := strings.Count(req, "."); n != 2 {
			t.Errorf("RelayRequest(%q) = %q has %d dots", name, req, n)
		}
		if n := strings.Count(in, "."); n != 3 || !strings.HasPrefix(in, req+".") {
			t.Errorf("RelayInbox(%q) = %q", name, in)
		}
		if !IsValidToken(strings.TrimPrefix(req, "sb.relay.")) {
			t.Errorf("bad token in %q", req)
		}
	}
}

func TestAgentPermissions(t *testing.T) {
	p := AgentPermissions([]string{"a", "b.c", ""})
	wantPub := []string{"sb.relay.a", "sb.relay.a.>", "sb.relay.b_2Ec", "sb.relay.b_2Ec.>"}
	if !slices.Equal(p.Publish, wantPub) {
		t.Errorf("publish = %v, want %v", p.Publish, wantPub)
	}
	wantSub := []string{"$SRV.PING", "$SRV.INFO", "$SRV.STATS",
		"sb.relay.a", "sb.relay.a.>", "$SRV.*.sb-relay-a", "$SRV.*.sb-relay-a.*",
		"sb.relay.b_2Ec", "sb.relay.b_2Ec.>", "$SRV.*.sb-relay-b_2Ec", "$SRV.*.sb-relay-b_2Ec.*"}
	if !slices.Equal(p.Subscribe, wantSub) {
		t.Errorf("subscribe = %v, want %v", p.Subscribe, wantSub)
	}
	if !p.AllowResponses {
		t.Error("responses not allowed")
	}
	for _, s := range append(p.Publish, p.Subscribe...) {
		if strings.HasPrefix(s, "_INBOX") || s == ">" || s == "sb.>" || s == "sb.relay.>" {
			t.Errorf("over-broad permission %q", s)
		}
	}
	// No upstream: publishing is denied (a non-nil, empty allow-list).
	if none := AgentPermissions(nil); none.Publish == nil || len(none.Publish) != 0 {
		t.Errorf("no upstreams: publish = %#v", none.Publish)
	}
}
