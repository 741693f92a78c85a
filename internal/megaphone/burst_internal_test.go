package megaphone

import (
	"runtime/debug"
	"testing"
)

// gcPercent reads the GC percent.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestGCDuringBursts: the first burst lowers the GC percent, the last
// one to end restores it, and a lower setting of the operator (or GC
// off) stays untouched.
func TestGCDuringBursts(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	var g gcDuringBursts
	g.enter()
	g.enter()
	if p := gcPercent(); p != burstGCPercent {
		t.Fatalf("during two bursts: GC percent %d, want %d", p, burstGCPercent)
	}
	g.leave()
	if p := gcPercent(); p != burstGCPercent {
		t.Fatalf("one burst still on: GC percent %d, want %d", p, burstGCPercent)
	}
	g.leave()
	if p := gcPercent(); p != 100 {
		t.Fatalf("after the bursts: GC percent %d, want 100", p)
	}
	for _, set := range []int{20, -1} {
		debug.SetGCPercent(set)
		g.enter()
		if p := gcPercent(); p != set {
			t.Fatalf("operator's %d: during a burst %d", set, p)
		}
		g.leave()
		if p := gcPercent(); p != set {
			t.Fatalf("operator's %d: after a burst %d", set, p)
		}
	}
}
