package megaphone

import (
	"strings"
	"sync"
	"testing"
)

// TestEventIDs: event ids drawn from the shared random blocks, from many
// goroutines at once, are eidLen alphanumerics, all distinct, and use
// the whole alphabet.
func TestEventIDs(t *testing.T) {
	const workers, each = 8, 2000
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				ids[w] = append(ids[w], newStamp().eid)
			}
		}()
	}
	wg.Wait()
	seen := make(map[string]bool, workers*each)
	var used [256]bool
	for _, list := range ids {
		for _, id := range list {
			if len(id) != eidLen || !isAlnum(id) {
				t.Fatalf("event id %q", id)
			}
			if seen[id] {
				t.Fatalf("event id %q drawn twice", id)
			}
			seen[id] = true
			for i := 0; i < len(id); i++ {
				used[id[i]] = true
			}
		}
	}
	for _, c := range []byte(alphanumerics) {
		if !used[c] {
			t.Fatalf("%q never drawn in %d ids", c, len(seen))
		}
	}
	if st := newStamp(); !strings.HasSuffix(st.ts, "Z") {
		t.Fatalf("ts %q is not UTC", st.ts)
	}
}
