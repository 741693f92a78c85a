package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestPipeSubjects(t *testing.T) {
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct{ got, want string }{
		{PipeQueueAll(), "sb.pipe.q.>"},
		{must(PipeNamespace("a.b")), "sb.pipe.q.a_2Eb.>"},
		{must(PipeChannel("ns", "x>")), "sb.pipe.q.ns.x_3E.>"},
		{must(PipeRole("ns", "*", PipeProducer)), "sb.pipe.q.ns._2A.p.*"},
		{must(PipeRole("ns", "", PipeConsumer)), "sb.pipe.q.ns.*.c.*"},
		{must(PipeEntry("ns", "a b", PipeMatcher, "gw1")), "sb.pipe.q.ns.a_20b.m.gw1"},
		{must(PipeGatewayEntries("gw1")), "sb.pipe.q.*.*.*.gw1"},
		{must(PipeClaim("gw1", "42")), "sb.pipe.claim.gw1.42"},
		{must(PipeClaimAll("gw1")), "sb.pipe.claim.gw1.*"},
		{must(PipeAlive("gw1")), "sb.pipe.alive.gw1"},
		{must(PipeGone("ns", "")), "sb.pipe.gone.ns"},
		{must(PipeGone("ns", "c.d")), "sb.pipe.gone.ns.c_2Ed"},
		{PipeGoneAll(), "sb.pipe.gone.>"},
		{PipeDirectGet(), "$JS.API.DIRECT.GET.SB_PIPE"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestPipeParseRoundTrip(t *testing.T) {
	for _, ns := range []string{"ns", "a.>", "*", "namespaces", "é"} {
		for _, name := range []string{"c", "a.b", ">", " ", "x_2E"} {
			subj, err := PipeEntry(ns, name, PipeConsumer, "gw-1")
			if err != nil {
				t.Fatal(err)
			}
			e, err := ParsePipeEntry(subj)
			if err != nil || e != (PipeEntryInfo{ns, name, PipeConsumer, "gw-1"}) {
				t.Fatalf("ParsePipeEntry(%q) = %+v, %v", subj, e, err)
			}
			gone, _ := PipeGone(ns, name)
			gns, gname, err := ParsePipeGone(gone)
			if err != nil || gns != ns || gname != name {
				t.Fatalf("ParsePipeGone(%q) = %q %q %v", gone, gns, gname, err)
			}
		}
	}
	claim, _ := PipeClaim("g", "w1")
	if g, w, err := ParsePipeClaim(claim); err != nil || g != "g" || w != "w1" {
		t.Fatalf("ParsePipeClaim = %q %q %v", g, w, err)
	}
	if ns, name, err := ParsePipeGone("sb.pipe.gone.ns"); err != nil || ns != "ns" || name != "" {
		t.Fatalf("namespace gone = %q %q %v", ns, name, err)
	}
}

func TestPipeRejects(t *testing.T) {
	if _, err := PipeEntry("", "x", PipeProducer, "g"); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty namespace: %v", err)
	}
	if _, err := PipeEntry("n", "x", "z", "g"); !errors.Is(err, ErrBadToken) {
		t.Errorf("bad role: %v", err)
	}
	for _, s := range []string{"sb.pipe.q.a.b.p", "sb.pipe.q.a.b.x.g", "sb.pipe.q.a.b_.p.g", "sb.relay.q.a.b.p.g", "sb.pipe.claim.g", "sb.pipe.gone"} {
		if _, err := ParsePipeEntry(s); err == nil {
			t.Errorf("ParsePipeEntry(%q) accepted", s)
		}
		if strings.Contains(s, "claim") {
			if _, _, err := ParsePipeClaim(s); err == nil {
				t.Errorf("ParsePipeClaim(%q) accepted", s)
			}
		}
		if strings.Contains(s, "gone") {
			if _, _, err := ParsePipeGone(s); err == nil {
				t.Errorf("ParsePipeGone(%q) accepted", s)
			}
		}
	}
}

// TestPipeNamesDoNotAlias proves that channels whose names hold subject
// syntax never share a queue or overlap another channel's filter.
func TestPipeNamesDoNotAlias(t *testing.T) {
	names := []string{"a", "a.b", "a.*", "a.>", "*", ">", "a b", "a_2Eb"}
	seen := map[string]string{}
	for _, n := range names {
		f, err := PipeChannel("ns", n)
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[f]; dup {
			t.Fatalf("%q and %q share %q", n, prev, f)
		}
		seen[f] = n
		if got := strings.Count(f, "."); got != 5 {
			t.Fatalf("filter %q of %q has %d dots", f, n, got)
		}
	}
}
