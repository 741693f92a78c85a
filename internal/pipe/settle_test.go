package pipe

import "testing"

// TestSettleOrder: a question waits for the deletions started before it,
// not for later ones.
func TestSettleOrder(t *testing.T) {
	var d deletions
	answers := map[string]bool{}
	answer := func(name string) func() {
		return func() { answers[name] = true }
	}
	d.settle(answer("idle"))
	if !answers["idle"] {
		t.Fatal("with nothing in flight: not answered at once")
	}
	n1, c1 := d.start("ch.a")
	n2, c2 := d.start("ch.b")
	d.settle(answer("A")) // waits for 1 and 2
	n3, c3 := d.start("ch.a")
	if n := d.inFlight(); n != 3 {
		t.Fatalf("%d deletions in flight, want 3", n)
	}
	clearingA := d.clearing("ch.a")
	if clearingA == nil {
		t.Fatal("ch.a not clearing with two deletions in flight")
	}
	close(c2)
	d.end("ch.b", n2)
	if answers["A"] {
		t.Fatal("A answered with deletion 1 still in flight")
	}
	if d.clearing("ch.b") != nil {
		t.Fatal("ch.b still clearing after its deletion ended")
	}
	// The newest deletion of ch.a ends first: ch.a still clears (1).
	close(c3)
	d.end("ch.a", n3)
	if d.clearing("ch.a") == nil {
		t.Fatal("ch.a not clearing while deletion 1 is in flight")
	}
	select {
	case <-clearingA:
		t.Fatal("ch.a cleared while deletion 1 is in flight")
	default:
	}
	d.settle(answer("B")) // waits for 1
	if answers["A"] || answers["B"] {
		t.Fatal("A or B answered with deletion 1 in flight")
	}
	close(c1)
	d.end("ch.a", n1)
	if !answers["A"] || !answers["B"] {
		t.Fatalf("answered after every deletion ended: A %v, B %v", answers["A"], answers["B"])
	}
	select {
	case <-clearingA:
	default:
		t.Fatal("ch.a's clearing not closed after its deletions ended")
	}
	if d.clearing("ch.a") != nil || len(d.waits) != 0 || len(d.live) != 0 {
		t.Fatalf("left behind: clearing %v, %d questions, %d deletions", d.clearing("ch.a") != nil, len(d.waits), len(d.live))
	}
}

// TestSettleMany: a question behind many deletions ending in any order is
// answered once the last of them ended, and not before.
func TestSettleMany(t *testing.T) {
	var d deletions
	const n = 1000
	nums := make([]uint64, n)
	for i := range nums {
		nums[i], _ = d.start("ch")
	}
	answered := false
	d.settle(func() { answered = true })
	later, _ := d.start("ch") // started after the question: not waited for
	for i := n - 1; i >= 0; i-- {
		if answered {
			t.Fatalf("answered with %d deletions still in flight", i+1)
		}
		d.end("ch", nums[i])
	}
	if !answered {
		t.Fatal("not answered after every deletion before it ended")
	}
	d.end("ch", later)
	if d.inFlight() != 0 || d.clearing("ch") != nil {
		t.Fatalf("left behind: %d in flight", d.inFlight())
	}
}
