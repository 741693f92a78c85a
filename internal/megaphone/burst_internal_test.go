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
	releases := func(g *gcDuringBursts) int64 { return g.releases.Load() }
	var g gcDuringBursts
	for range releaseAfterOpens - 1 {
		g.opened()
	}
	if g.watching.Load() {
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
		if g.watching.Load() {
			return fmt.Errorf("the second wave is still watched")
		}
		return nil
	})
	if n := releases(&g); n != 1 {
		t.Fatalf("a second wave within %s: %d releases, want 1", releaseEvery, n)
	}
}

// TestWaveNeedsOpeningsTogether: openings with a gap of waveQuiet between
// them are separate waves, so openings spread over hours never add up to
// a release; and gcOff reads GOGC=off without setting it.
func TestWaveNeedsOpeningsTogether(t *testing.T) {
	var g gcDuringBursts
	for range releaseAfterOpens - 1 {
		g.opened()
	}
	g.lastOpen.Store(time.Now().Add(-2 * waveQuiet).UnixNano()) // a quiet spell
	g.opened()
	if n := g.opens.Load(); n != 1 || g.watching.Load() {
		t.Fatalf("after a quiet spell: %d openings in the wave (want 1), watching %v", n, g.watching.Load())
	}
	orig := debug.SetGCPercent(-1)
	off := gcOff()
	debug.SetGCPercent(orig)
	if !off || gcOff() != (orig < 0) {
		t.Fatalf("gcOff: %v with GOGC=off, %v with %d", off, gcOff(), orig)
	}
}
