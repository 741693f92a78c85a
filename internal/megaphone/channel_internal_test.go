package megaphone

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExistsCacheSweeps: expired sightings leave the cache as new ones
// come in, live ones stay, each with its event subject.
func TestExistsCacheSweeps(t *testing.T) {
	c := newExistsCache(-time.Hour) // sightings that are expired when added
	for i := range 2 * sweepEvery {
		c.add("gone"+strconv.Itoa(i), "subj.gone")
	}
	c.ttl = time.Hour
	if _, ok := c.has("gone0"); ok {
		t.Fatal("expired sighting trusted")
	}
	for i := range sweepEvery {
		c.add("live"+strconv.Itoa(i), "subj."+strconv.Itoa(i))
	}
	if len(c.m) != sweepEvery {
		t.Fatalf("%d sightings cached, want the %d live ones", len(c.m), sweepEvery)
	}
	for i := range sweepEvery {
		if subj, ok := c.has("live" + strconv.Itoa(i)); !ok || subj != "subj."+strconv.Itoa(i) {
			t.Fatalf("live sighting %d: %q, %v", i, subj, ok)
		}
	}
}

// TestRevCacheSweeps: remembered revisions past their ttl are dropped as
// more are added, not kept until the cache holds maxCached.
func TestRevCacheSweeps(t *testing.T) {
	c := newRevCache(time.Hour)
	for i := range sweepEvery - 1 {
		c.put("old"+strconv.Itoa(i), keyRevs{ch: 1})
	}
	for k, v := range c.m { // age them past the ttl
		v.at = v.at.Add(-2 * time.Hour)
		c.m[k] = v
	}
	c.put("new", keyRevs{ch: 2})
	if len(c.m) != 1 {
		t.Fatalf("%d entries after a sweep, want only the new one", len(c.m))
	}
	if r, found, fresh := c.take("new"); !found || !fresh || r.ch != 2 {
		t.Fatalf("take(new) = %v, %v, %v", r, found, fresh)
	}
}

// TestRevCacheHeld: a claim held idle is handed over once, only at its
// revision, and only while no poll here took it; shutdown takes every
// held claim and nothing else.
func TestRevCacheHeld(t *testing.T) {
	c := newRevCache(time.Hour)
	c.put("a", keyRevs{ch: 1, claim: 7, held: true})
	c.put("b", keyRevs{ch: 1, claim: 8}) // a release marker
	c.put("c", keyRevs{ch: 1, claim: 9, held: true})
	if c.takeHeld("a", 6) || c.takeHeld("b", 8) || c.takeHeld("x", 7) {
		t.Fatal("handed over a claim not held at that revision")
	}
	if !c.takeHeld("a", 7) || c.takeHeld("a", 7) {
		t.Fatal("held claim a not handed over exactly once")
	}
	if _, found, _ := c.take("c"); !found { // a poll here took it
		t.Fatal("c not found")
	}
	if c.takeHeld("c", 9) {
		t.Fatal("handed over a claim a poll here took")
	}
	c.put("d", keyRevs{ch: 1, claim: 10, held: true})
	if got := c.takeAllHeld(); len(got) != 1 || got[0] != (heldClaim{id: "d", rev: 10}) {
		t.Fatalf("takeAllHeld = %v", got)
	}
	if _, found, _ := c.take("b"); !found {
		t.Fatal("takeAllHeld dropped an entry that holds no claim")
	}
}

func TestParseHandoff(t *testing.T) {
	id := strings.Repeat("a", 50)
	if rev, got, ok := parseHandoff([]byte("42 " + id)); !ok || rev != 42 || got != id {
		t.Fatalf("parseHandoff = %d %q %v", rev, got, ok)
	}
	for _, bad := range []string{"", "42", "42 ", " " + id, "0 " + id, "-1 " + id, "x " + id,
		"42 a.b", "42 a b", "42 " + strings.Repeat("a", 65), "18446744073709551616 " + id,
		"42 \x00", strings.Repeat("9", 200) + " a"} {
		if _, _, ok := parseHandoff([]byte(bad)); ok {
			t.Fatalf("parseHandoff(%q) accepted", bad)
		}
	}
}

// TestMatches: the byte comparison agrees with decoding the value, for
// the values gateways write and for anything else.
func TestMatches(t *testing.T) {
	for _, agent := range []string{"main", "a-b_c", `q"uote`, `back\slash`, "<tag>", "é", "tab\t"} {
		own, _ := json.Marshal(channelMeta{Agent: agent})
		for _, v := range []string{string(own), `{"agent":"` + agent + `"}`, `{"agent":"main"}`, `{"agent": "main"}`,
			`{"agent":"main","x":1}`, `{"agent":"mai"}`, `{"agent":"mainn"}`, `{}`, ``, `not json`, `{"agent":"` + agent + `"`} {
			var meta channelMeta
			want := json.Unmarshal([]byte(v), &meta) == nil && meta.Agent == agent
			if got := matches(address{agent: agent}, []byte(v)); got != want {
				t.Errorf("matches(%q, %q) = %v, decoding says %v", agent, v, got, want)
			}
		}
		if !matches(address{agent: agent}, own) {
			t.Errorf("the value written for %q does not match it", agent)
		}
	}
}
