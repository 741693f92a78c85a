package megaphone

import "testing"

// len counts the entries (tests only).
func (c *memo[K, V]) len() int {
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	return n
}

// TestMemoBound: a memo never holds more than its bound; past it, it
// starts over with the newest entry.
func TestMemoBound(t *testing.T) {
	c := newMemo[int, string](3)
	for i := range 3 {
		c.store(i, "v")
	}
	if n := c.len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	c.store(3, "new")
	if v, ok := c.load(3); !ok || v != "new" || c.len() != 1 {
		t.Fatalf("after the bound: load(3) = %q %v, %d entries, want only it", v, ok, c.len())
	}
	if _, ok := c.load(0); ok {
		t.Fatal("an entry from before the reset is still there")
	}
}
