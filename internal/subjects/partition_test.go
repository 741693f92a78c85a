package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestPartitionStable(t *testing.T) {
	// Golden values: the mapping must never change, or a cluster's data
	// would move to other partitions on upgrade.
	for _, tc := range []struct {
		key  string
		k    int
		want int
	}{
		{"anything", 1, 0}, {"anything", 0, 0},
		{"", 4, int(uint32(2166136261) % 4)},
		{"a", 4, int(uint32(0xe40c292c) % 4)},
		{"foobar", 64, int(uint32(0xbf9cf968) % 64)},
	} {
		if got := Partition(tc.key, tc.k); got != tc.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", tc.key, tc.k, got, tc.want)
		}
	}
}

func TestPartitionSpreads(t *testing.T) {
	const k = 4
	seen := make([]int, k)
	for i := range 400 {
		seen[Partition(strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('A'+i/26)), k)]++
	}
	for p, n := range seen {
		if n < 50 {
			t.Errorf("partition %d got %d of 400 keys: %v", p, n, seen)
		}
	}
}

func TestPartitionNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{MegaphoneStreamOf(0, 1), MegaphoneStream},
		{MegaphoneChannelsBucketOf(0, 1), MegaphoneChannelsBucket},
		{MegaphoneReadersBucketOf(0, 1), MegaphoneReadersBucket},
		{PipeStreamOf(0, 1), PipeStream},
		{MegaphoneEventsAllIn(0, 1), MegaphoneEventsAll()},
		{PipeQueueAllIn(0, 1), PipeQueueAll()},
		{MegaphoneDirectGetOf(0, 1), MegaphoneDirectGet()},
		{PipeDirectGetOf(0, 1), PipeDirectGet()},
		{MegaphoneStreamOf(3, 4), "SB_MEGAPHONE_P3"},
		{MegaphoneChannelsBucketOf(0, 4), "SB_MP_CHANNELS_P0"},
		{MegaphoneReadersBucketOf(2, 4), "SB_MP_READERS_P2"},
		{PipeStreamOf(1, 4), "SB_PIPE_P1"},
		{MegaphoneEventsAllIn(2, 4), "sb.mp.ev2.*"},
		{PipeQueueAllIn(12, 16), "sb.pipe.q12.>"},
		{MegaphoneDirectGetOf(1, 2), "$JS.API.DIRECT.GET.SB_MEGAPHONE_P1"},
		{PipeDirectGetOf(1, 2), "$JS.API.DIRECT.GET.SB_PIPE_P1"},
		{JSStreamLeaderStepDown("SB_PIPE_P1"), "$JS.API.STREAM.LEADER.STEPDOWN.SB_PIPE_P1"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestMegaphoneRepublish: the republish of every partition maps a
// channel's event subject onto that channel's wake-up subject.
func TestMegaphoneRepublish(t *testing.T) {
	for _, k := range []int{1, 4} {
		for p := range k {
			src, dst := MegaphoneRepublishOf(p, k)
			if src != MegaphoneEventsAllIn(p, k) || dst != "sb.mp.wake.{{wildcard(1)}}" {
				t.Fatalf("partition %d of %d: %q -> %q", p, k, src, dst)
			}
		}
	}
}

func TestMegaphoneEventsIn(t *testing.T) {
	one, err := MegaphoneEventsIn("abc", 1)
	if err != nil || one != mustSubj(MegaphoneEvents("abc")) {
		t.Fatalf("k=1: %q %v", one, err)
	}
	for _, id := range []string{"abc", "x1", "zzzzzz", "q"} {
		subj, err := MegaphoneEventsIn(id, 4)
		if err != nil {
			t.Fatal(err)
		}
		p := MegaphonePartition(id, 4)
		if want := "sb.mp.ev" + string(rune('0'+p)) + "." + id; subj != want {
			t.Errorf("%s: %q, want %q", id, subj, want)
		}
		if got, err := ChannelFromMegaphoneSubject(subj); err != nil || got != id {
			t.Errorf("ChannelFromMegaphoneSubject(%q) = %q, %v", subj, got, err)
		}
	}
	if _, err := MegaphoneEventsIn("", 4); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty channel: %v", err)
	}
	for _, bad := range []string{"sb.mp.evx.abc", "sb.mp.ev123.abc", "sb.mp.ev-1.abc"} {
		if _, err := ChannelFromMegaphoneSubject(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestPipePartitions(t *testing.T) {
	const k = 8
	ns, name := "team a", "ch.1"
	want, err := PipeChannelPartition(ns, name, k)
	if err != nil {
		t.Fatal(err)
	}
	entry := mustSubj(PipeEntry(ns, name, PipeProducer, "gw1"))
	for _, pinned := range []string{entry, mustSubj(PipeChannel(ns, name)), mustSubj(PipeRole(ns, name, PipeConsumer))} {
		if p, ok := PipePartitionOf(pinned, k); !ok || p != want {
			t.Errorf("PipePartitionOf(%q) = %d %v, want %d", pinned, p, ok, want)
		}
	}
	for _, spans := range []string{PipeQueueAll(), mustSubj(PipeNamespace(ns)), mustSubj(PipeRole(ns, "", PipeConsumer)),
		mustSubj(PipeGatewayEntries("gw1")), mustSubj(PipeClaim("gw1", "x")), "sb.pipe.q"} {
		if _, ok := PipePartitionOf(spans, k); ok {
			t.Errorf("PipePartitionOf(%q) pins a partition", spans)
		}
	}
	stored := PipeInPartition(entry, want, k)
	if !strings.HasPrefix(stored, "sb.pipe.q"+itoa(want)+".") || strings.TrimPrefix(stored, "sb.pipe.q"+itoa(want)) != strings.TrimPrefix(entry, "sb.pipe.q") {
		t.Fatalf("stored form %q of %q", stored, entry)
	}
	info, err := ParsePipeEntry(stored)
	if err != nil || info != (PipeEntryInfo{Namespace: ns, Name: name, Role: PipeProducer, Gateway: "gw1"}) {
		t.Fatalf("ParsePipeEntry(%q) = %+v, %v", stored, info, err)
	}
	if got := PipeInPartition(entry, 3, 1); got != entry {
		t.Errorf("k=1 changed %q to %q", entry, got)
	}
	if got := PipeInPartition("sb.pipe.claim.a.b", 3, 4); got != "sb.pipe.claim.a.b" {
		t.Errorf("non-queue subject changed: %q", got)
	}
	if _, err := PipeChannelPartition("", "x", k); err == nil {
		t.Error("empty namespace accepted")
	}
}

func mustSubj(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func itoa(i int) string { return string(rune('0' + i)) }
