package megaphone

import (
	"strconv"
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
	if r, ok := c.take("new"); !ok || r.ch != 2 {
		t.Fatalf("take(new) = %v, %v", r, ok)
	}
}
