package megaphone

import (
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
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

// TestMemoryReleasedAfterWave: a wave of releaseAfterOpens openings hands
// its memory back to the OS once it has been quiet for waveQuiet; a
// smaller wave, or one within releaseEvery of the last release, does not.
func TestMemoryReleasedAfterWave(t *testing.T) {
	releases := func(g *gcDuringBursts) int {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.releases
	}
	var g gcDuringBursts
	for range releaseAfterOpens - 1 {
		g.opened()
	}
	g.mu.Lock()
	watching := g.watching
	g.mu.Unlock()
	if watching {
		t.Fatalf("a wave of %d openings is watched for its end", releaseAfterOpens-1)
	}
	g.opened()
	natstest.Eventually(t, 5*time.Second, func() error {
		if n := releases(&g); n != 1 {
			return fmt.Errorf("%d releases after a wave of %d openings, want 1", n, releaseAfterOpens)
		}
		return nil
	})
	for range releaseAfterOpens {
		g.opened()
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.watching {
			return fmt.Errorf("the second wave is still watched")
		}
		return nil
	})
	if n := releases(&g); n != 1 {
		t.Fatalf("a second wave within %s: %d releases, want 1", releaseEvery, n)
	}
}
