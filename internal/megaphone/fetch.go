package megaphone

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/subjects"
)

// A poll reads the buffer in batches: one request returns every event
// after the cursor (up to readBatch events and readBatchBytes), and one
// purge removes all of them once delivered. Per event that is a fraction
// of a request each way instead of a get and a delete.
const (
	readBatch      = 128
	readBatchBytes = 256 << 10
	// readTimeout bounds one request to JetStream.
	readTimeout = 5 * time.Second
)

// numPendingHeader is how many matching events a batch left behind (on
// its end-of-batch marker).
const numPendingHeader = "Nats-Num-Pending"

// stored is one buffered event as read from the stream.
type stored struct {
	seq  uint64
	data []byte
}

// batchGets reads events with JetStream batch direct gets. It is used
// when the stream has one replica: a direct get is answered by any
// replica, and with more than one a lagging follower could miss an event
// whose wake-up already arrived. Every reply of every poll arrives on one
// subscription of the broker and is routed by its last token, so a read
// costs no subscription of its own.
type batchGets struct {
	nc    *nats.Conn
	inbox string
	sub   *nats.Subscription

	mu      sync.Mutex
	n       uint64
	pending map[string]chan *nats.Msg
}

func newBatchGets(nc *nats.Conn) (*batchGets, error) {
	g := &batchGets{nc: nc, inbox: nc.NewInbox(), pending: make(map[string]chan *nats.Msg)}
	sub, err := nc.Subscribe(subjects.ReplyAll(g.inbox), g.route)
	if err != nil {
		return nil, fmt.Errorf("megaphone: subscribe to batch replies: %w", err)
	}
	// One reply is up to readBatchBytes; many polls read at once.
	_ = sub.SetPendingLimits(-1, 256<<20)
	g.sub = sub
	return g, nil
}

func (g *batchGets) close() {
	if g != nil && g.sub != nil {
		_ = g.sub.Unsubscribe()
	}
}

// route hands a reply message to the read waiting for it. The channel
// holds a whole reply (readBatch events and the end marker), so it never
// blocks; a reply for a read that gave up is dropped.
func (g *batchGets) route(m *nats.Msg) {
	tok := m.Subject[min(len(g.inbox)+1, len(m.Subject)):]
	g.mu.Lock()
	ch := g.pending[tok]
	g.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- m:
	default:
	}
}

// directBatch is the body of a batch direct get.
type directBatch struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj"`
	Batch    int    `json:"batch"`
	MaxBytes int    `json:"max_bytes"`
}

// read returns the events on subject subj from sequence from on, oldest
// first, and whether more were buffered behind them when JetStream
// answered.
func (g *batchGets) read(ctx context.Context, stream, subj string, from uint64) ([]stored, bool, error) {
	body, err := json.Marshal(directBatch{Seq: from, NextFor: subj, Batch: readBatch, MaxBytes: readBatchBytes})
	if err != nil {
		return nil, false, err
	}
	ch := make(chan *nats.Msg, readBatch+1)
	g.mu.Lock()
	g.n++
	tok := strconv.FormatUint(g.n, 36)
	g.pending[tok] = ch
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.pending, tok)
		g.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	req := &nats.Msg{Subject: stream, Reply: subjects.Reply(g.inbox, tok), Data: body}
	if err := g.nc.PublishMsg(req); err != nil {
		return nil, false, fmt.Errorf("megaphone: read events: %w", err)
	}
	var out []stored
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return nil, false, fmt.Errorf("megaphone: read events: %w", ctx.Err())
		}
		switch st := m.Header.Get("Status"); st {
		case "":
		case "404":
			return out, false, nil
		case "204": // end of the batch
			pending, _ := strconv.ParseUint(m.Header.Get(numPendingHeader), 10, 64)
			return out, pending > 0, nil
		default:
			return nil, false, fmt.Errorf("megaphone: read events: status %s %s", st, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || seq < from {
			return nil, false, fmt.Errorf("megaphone: read events: bad sequence %q", m.Header.Get(jetstream.SequenceHeader))
		}
		out = append(out, stored{seq: seq, data: m.Data})
	}
}
