package subjects

import (
	"hash/fnv"
	"strconv"
	"strings"
)

// Partitions (jetstream.partitions). The Megaphone event stream, the pipe
// queue stream and the Megaphone channels and readers buckets are each
// split into k streams, so that their Raft leaders spread over the NATS
// nodes. A channel (Megaphone channel id, pipe namespace and name) always
// lives in partition [Partition] of its key; this file is the only place
// that knows the mapping.
//
// With k = 1 every name and subject is exactly the unpartitioned one
// (SB_MEGAPHONE, sb.mp.ev.<ch>, SB_PIPE, sb.pipe.q.…). With k > 1
// partition p is named <name>_P<p> and its stream subjects carry the
// partition in their third token (sb.mp.ev<p>.<ch>, sb.pipe.q<p>.…), so
// the streams' subjects never overlap one another nor those of k = 1.
const (
	// MaxPartitions bounds jetstream.partitions.
	MaxPartitions = 64
	// ClusterBucket is the small KV bucket that records settings every
	// gateway of a cluster must agree on.
	ClusterBucket = "SB_CLUSTER"
	// ClusterPartitionsKey is the key of the partition count in
	// [ClusterBucket] (a decimal number).
	ClusterPartitionsKey = "partitions"
)

// Partition returns the partition, 0..k-1, of key: FNV-1a (32 bits) of
// key modulo k. It is stable across versions and processes; k <= 1 is 0.
func Partition(key string, k int) int {
	if k <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(k))
}

// partName is base for k <= 1, else base_P<p>.
func partName(base string, p, k int) string {
	if k <= 1 {
		return base
	}
	return base + "_P" + strconv.Itoa(p)
}

// partToken is tok for k <= 1, else tok<p>.
func partToken(tok string, p, k int) string {
	if k <= 1 {
		return tok
	}
	return tok + strconv.Itoa(p)
}

// isPartToken reports whether s is tok or tok followed by a partition
// number (1 or 2 decimal digits).
func isPartToken(s, tok string) bool {
	rest, ok := strings.CutPrefix(s, tok)
	if !ok || len(rest) > 2 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	return true
}

// MegaphoneStreamOf is the name of event-stream partition p of k.
func MegaphoneStreamOf(p, k int) string { return partName(MegaphoneStream, p, k) }

// MegaphoneChannelsBucketOf is the name of channels-bucket partition p of k.
func MegaphoneChannelsBucketOf(p, k int) string { return partName(MegaphoneChannelsBucket, p, k) }

// MegaphoneReadersBucketOf is the name of readers-bucket partition p of k.
func MegaphoneReadersBucketOf(p, k int) string { return partName(MegaphoneReadersBucket, p, k) }

// MegaphonePartition is the partition of Megaphone channel id among k.
func MegaphonePartition(channel string, k int) int { return Partition(channel, k) }

// MegaphoneEventsIn is the stream subject of channel's buffered events
// when there are k partitions; for k = 1 it is [MegaphoneEvents].
func MegaphoneEventsIn(channel string, k int) (string, error) {
	return megaphoneSubject(partToken(mpEvents, MegaphonePartition(channel, k), k), channel)
}

// MegaphoneEventsAllIn matches every channel's event subject of
// partition p of k; for k = 1 it is [MegaphoneEventsAll].
func MegaphoneEventsAllIn(p, k int) string {
	return join(Prefix, mpToken, partToken(mpEvents, p, k), "*")
}

// MegaphoneRepublishOf is the republish of event-stream partition p of
// k: every stored event of channel c ("sb.mp.ev<p>.<c>") is republished
// by the stream leader, with its sequence and the previous sequence
// stored on its subject in the headers, on the channel's wake-up subject
// [MegaphoneWake] ("sb.mp.wake.<c>").
func MegaphoneRepublishOf(p, k int) (source, destination string) {
	return MegaphoneEventsAllIn(p, k), join(Prefix, mpToken, mpWake, "{{wildcard(1)}}")
}

// MegaphoneDirectGetOf is the direct-get API subject of event-stream
// partition p of k.
func MegaphoneDirectGetOf(p, k int) string {
	return join("$JS", "API", "DIRECT", "GET", MegaphoneStreamOf(p, k))
}

// PipeStreamOf is the name of queue-stream partition p of k.
func PipeStreamOf(p, k int) string { return partName(PipeStream, p, k) }

// PipeDirectGetOf is the direct-get API subject of queue-stream partition
// p of k.
func PipeDirectGetOf(p, k int) string { return "$JS.API.DIRECT.GET." + PipeStreamOf(p, k) }

// PipeQueueAllIn is the filter of every entry of queue partition p of k;
// for k = 1 it is [PipeQueueAll].
func PipeQueueAllIn(p, k int) string {
	return join(Prefix, pipeToken, partToken(pipeQueueToken, p, k), ">")
}

// PipeChannelPartition is the partition of pipe channel ns/name among k.
func PipeChannelPartition(ns, name string, k int) (int, error) {
	n, c, err := encodePair(ns, name)
	if err != nil {
		return 0, err
	}
	return Partition(n+"."+c, k), nil
}

// PipePartitionOf returns the partition among k of a queue subject or
// filter built by [PipeEntry], [PipeChannel] or [PipeRole] with a name:
// one that names a single channel. ok is false for a filter that spans
// channels ([PipeQueueAll], [PipeNamespace], [PipeRole] without a name,
// [PipeGatewayEntries]) or is not a queue subject; such a filter is
// applied to every partition with [PipeInPartition].
func PipePartitionOf(filter string, k int) (p int, ok bool) {
	toks := strings.Split(filter, ".")
	if len(toks) < 6 || toks[0] != Prefix || toks[1] != pipeToken || toks[2] != pipeQueueToken {
		return 0, false
	}
	if isWildcard(toks[3]) || isWildcard(toks[4]) {
		return 0, false
	}
	return Partition(toks[3]+"."+toks[4], k), true
}

// PipeInPartition is the form of an unpartitioned queue subject or filter
// inside queue partition p of k: the same subject for k = 1, else with the
// queue token q replaced by q<p>. Anything else is returned unchanged.
func PipeInPartition(subject string, p, k int) string {
	pfx := Prefix + "." + pipeToken + "." + pipeQueueToken + "."
	if k <= 1 || !strings.HasPrefix(subject, pfx) {
		return subject
	}
	return Prefix + "." + pipeToken + "." + partToken(pipeQueueToken, p, k) + "." + subject[len(pfx):]
}

func isWildcard(tok string) bool { return tok == "*" || tok == ">" }

// JSStreamLeaderStepDown is the JetStream API subject that makes a
// stream's leader step down, so another replica takes over (rebalancing
// partition leaders that crowd on one node).
func JSStreamLeaderStepDown(stream string) string {
	return join("$JS", "API", "STREAM", "LEADER", "STEPDOWN", stream)
}
