package pipe

import (
	"fmt"
	"iter"

	"github.com/switchboard/switchboard/internal/subjects"
)

// A queue position (entry.seq, what appendIf returns and remove takes)
// is the entry's stream sequence with its partition in the top bits, so
// that a position alone names one entry of one partition. With one
// partition a position is the stream sequence. Positions of one channel
// are in one partition, so they order like their sequences.
const (
	partShift = 56
	seqMask   = 1<<partShift - 1
)

func pos(p int, seq uint64) uint64 { return uint64(p)<<partShift | seq&seqMask }

func partOf(pos uint64) int { return int(pos >> partShift) }

func seqOf(pos uint64) uint64 { return pos & seqMask }

// pinned returns the partition of a subject or filter that names one
// channel, and its stored form there. A filter that spans channels is a
// programming error with more than one partition.
func (q *queue) pinned(filter string) (int, string, error) {
	k := len(q.streams)
	if k == 1 {
		return 0, filter, nil
	}
	p, ok := subjects.PipePartitionOf(filter, k)
	if !ok {
		return 0, "", fmt.Errorf("%w: %q does not name one channel", ErrUnavailable, filter)
	}
	return p, subjects.PipeInPartition(filter, p, k), nil
}

// spanned yields every partition filter matches in, with filter's stored
// form there: one for a filter naming a channel, else all.
func (q *queue) spanned(filter string) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		k := len(q.streams)
		if p, ok := subjects.PipePartitionOf(filter, k); ok || k == 1 {
			yield(p, subjects.PipeInPartition(filter, p, k))
			return
		}
		for p := range k {
			if !yield(p, subjects.PipeInPartition(filter, p, k)) {
				return
			}
		}
	}
}
