package megaphone

import (
	"strconv"
	"testing"
	"time"
)

// TestExistsCacheSweeps: expired sightings leave the cache as new ones
// come in, live ones stay.
func TestExistsCacheSweeps(t *testing.T) {
	c := newExistsCache(-time.Hour) // sightings that are expired when added
	for i := range 2 * sweepEvery {
		c.add("gone" + strconv.Itoa(i))
	}
	c.ttl = time.Hour
	for i := range sweepEvery {
		c.add("live" + strconv.Itoa(i))
	}
	if len(c.m) != sweepEvery {
		t.Fatalf("%d sightings cached, want the %d live ones", len(c.m), sweepEvery)
	}
	for i := range sweepEvery {
		if !c.has("live" + strconv.Itoa(i)) {
			t.Fatalf("live sighting %d dropped", i)
		}
	}
}
