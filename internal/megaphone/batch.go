package megaphone

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Failure reasons of a batch write.
const (
	ReasonNotFound = "NOT_FOUND"
	ReasonTimeout  = "TIMEOUT"
	ReasonSkipped  = "SKIPPED"
	ReasonInternal = "INTERNAL_SERVER_ERROR"
	// ReasonTooLarge is a message whose event exceeds
	// megaphone.max_event_bytes: it is stored on no channel, and the
	// channel's later messages are SKIPPED, as after a TIMEOUT.
	ReasonTooLarge = "PAYLOAD_TOO_LARGE"
)

// batchParallel bounds how many channels of one batch are written at once.
const batchParallel = 16

// BatchMessage is one message of a batch write.
type BatchMessage struct {
	StreamID string
	Body     []byte
}

// Failure is one message that did not reach one channel.
type Failure struct {
	Channel string `json:"channel"`
	Index   int    `json:"index"`
	Reason  string `json:"reason"`
}

// WriteBatch writes every message to every channel, per channel in order.
// Each message gets one eid and ts shared by all channels. An unknown
// channel fails every index with NOT_FOUND; after a TIMEOUT the rest of
// that channel's messages are SKIPPED. A message over
// megaphone.max_event_bytes fails with PAYLOAD_TOO_LARGE on every live
// channel, the rest of each SKIPPED. A malformed message, or one a NATS
// message cannot carry, fails the whole batch (ErrBadRequest,
// ErrTooLarge) before anything is written.
func (b *Broker) WriteBatch(ctx context.Context, channels []string, msgs []BatchMessage) ([]Failure, error) {
	lines := make([][]byte, len(msgs)) // nil: refused by checkMaxEvent
	for i, m := range msgs {
		if err := checkStreamID(m.StreamID); err != nil {
			return nil, fmt.Errorf("messages[%d].streamId: %w", i, err)
		}
		line, err := encodeEvent(m.StreamID, m.Body, newStamp())
		if err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		if b.checkMaxEvent(line) != nil {
			continue
		}
		if err := b.checkSize(line); err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		lines[i] = line
	}
	results := make([][]Failure, len(channels))
	sem := make(chan struct{}, batchParallel)
	var wg sync.WaitGroup
	for ci, ch := range channels {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[ci] = b.writeChannel(ctx, ch, lines)
		}()
	}
	wg.Wait()
	failures := []Failure{}
	for _, r := range results {
		failures = append(failures, r...)
	}
	return failures, nil
}

// writeChannel writes lines in order to one channel and returns its
// failures.
func (b *Broker) writeChannel(ctx context.Context, ch string, lines [][]byte) []Failure {
	var out []Failure
	fail := func(from int, reason string) {
		out = append(out, Failure{Channel: ch, Index: from, Reason: reason})
		for i := from + 1; i < len(lines); i++ {
			r := ReasonSkipped
			if reason == ReasonNotFound {
				r = ReasonNotFound
			}
			out = append(out, Failure{Channel: ch, Index: i, Reason: r})
		}
	}
	var subj string
	a, err := b.codec.resolve(ch)
	if err == nil {
		subj, err = b.lookup(ctx, a, true)
	}
	if err != nil {
		if errors.Is(err, ErrBadAddress) || errors.Is(err, ErrNotFound) {
			b.m.unroutable.Add(float64(len(lines)))
			fail(0, ReasonNotFound)
		} else {
			b.log.Warn("batch lookup failed", "err", err)
			fail(0, ReasonInternal)
		}
		return out
	}
	for i, line := range lines {
		if line == nil {
			fail(i, ReasonTooLarge)
			return out
		}
		err := b.store(ctx, a, subj, line, time.Now().Add(b.cfg.WriteWait))
		switch {
		case err == nil:
			continue
		case errors.Is(err, ErrTimeout):
			fail(i, ReasonTimeout)
		case errors.Is(err, ErrNotFound):
			b.m.unroutable.Add(float64(len(lines) - i))
			fail(i, ReasonNotFound)
		default:
			b.log.Warn("batch write failed", "err", err)
			fail(i, ReasonInternal)
		}
		return out
	}
	return out
}
