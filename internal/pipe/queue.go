package pipe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/jsutil"
	"github.com/switchboard/switchboard/internal/subjects"
)

// queue is the cluster-wide record of waiting parties: one JetStream
// stream per partition (jetstream.partitions), one subject per channel,
// role and gateway (see package doc). Callers use the unpartitioned
// subjects of internal/subjects; the queue stores a channel's entries in
// the channel's partition (see partition.go). Reads must be consistent
// with the compare-and-set appends: with one replica they are direct gets
// (cheap, answered by the only copy); with more they go to the stream
// leader through the API, because a direct get may be answered by a
// lagging follower.
type queue struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	streams []jetstream.Stream // by partition
	deletes []string           // message delete API subject, by partition
	direct  bool
}

// entry is one stored queue entry.
type entry struct {
	seq  uint64 // a position (see pos): stream sequence and partition
	info subjects.PipeEntryInfo
	id   string // the waiting party's id on its gateway
	// alone: appended to an empty channel (see fastpath.go).
	alone bool
}

// owner names the party an entry stands for: its gateway and its id
// there, unique together.
type owner struct{ gateway, id string }

func (e *entry) owner() owner { return owner{e.info.Gateway, e.id} }

// errConflict means the channel changed between read and append.
var errConflict = errors.New("pipe: channel changed concurrently")

// queueConfig is the stream's configuration. Entries only mean something
// while their gateway holds the HTTP request, so memory storage is right;
// markers expire by per-message TTL if their gateway dies mid-match.
func queueConfig(replicas, p, k int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        subjects.PipeStreamOf(p, k),
		Description: "Switchboard pipes: waiting producers and consumers in arrival order",
		Subjects:    []string{subjects.PipeQueueAllIn(p, k)},
		Storage:     jetstream.MemoryStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    max(replicas, 1),
		AllowDirect: replicas <= 1,
		AllowMsgTTL: true,
		Duplicates:  time.Second,
	}
}

func openQueue(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, replicas, parts int) (*queue, error) {
	parts = max(parts, 1)
	q := &queue{nc: nc, js: js, streams: make([]jetstream.Stream, parts), direct: replicas <= 1}
	for p := range parts {
		q.deletes = append(q.deletes, subjects.JSMsgDelete(subjects.PipeStreamOf(p, parts)))
	}
	steps := make([]func(context.Context) error, parts)
	for p := range parts {
		steps[p] = func(ctx context.Context) (err error) {
			q.streams[p], err = jsutil.EnsureStream(ctx, js, queueConfig(replicas, p, parts))
			return err
		}
	}
	if err := jsutil.Parallel(ctx, steps...); err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	return q, nil
}

// directRequest is the body of a direct get.
type directRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

// directGet reads one entry of partition p with a direct get; nil when
// there is none.
func (q *queue) directGet(ctx context.Context, p int, req directRequest) (*entry, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	m, err := q.nc.RequestWithContext(ctx, subjects.PipeDirectGetOf(p, len(q.streams)), body)
	if err != nil {
		return nil, fmt.Errorf("%w: direct get: %v", ErrUnavailable, err)
	}
	if st := m.Header.Get("Status"); st != "" {
		if st == "404" {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: direct get: status %s %s", ErrUnavailable, st, m.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: direct get: bad sequence: %v", ErrUnavailable, err)
	}
	info, err := subjects.ParsePipeEntry(m.Header.Get(jetstream.SubjectHeader))
	if err != nil {
		return nil, err
	}
	return &entry{seq: pos(p, seq), info: info, id: string(m.Data), alone: m.Header.Get(hdrAlone) == "1"}, nil
}

func toEntry(p int, m *jetstream.RawStreamMsg) (*entry, error) {
	info, err := subjects.ParsePipeEntry(m.Subject)
	if err != nil {
		return nil, err
	}
	return &entry{seq: pos(p, m.Sequence), info: info, id: string(m.Data), alone: m.Header.Get(hdrAlone) == "1"}, nil
}

// last returns the newest entry matching filter, or nil.
func (q *queue) last(ctx context.Context, filter string) (*entry, error) {
	p, filter, err := q.pinned(filter)
	if err != nil {
		return nil, err
	}
	if q.direct {
		return q.directGet(ctx, p, directRequest{LastFor: filter})
	}
	m, err := q.streams[p].GetLastMsgForSubject(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: last entry: %v", ErrUnavailable, err)
	}
	return toEntry(p, m)
}

// first returns the oldest entry matching filter, or nil.
func (q *queue) first(ctx context.Context, filter string) (*entry, error) {
	p, filter, err := q.pinned(filter)
	if err != nil {
		return nil, err
	}
	if q.direct {
		return q.directGet(ctx, p, directRequest{Seq: 1, NextFor: filter})
	}
	m, err := q.streams[p].GetMsg(ctx, 1, jetstream.WithGetMsgSubject(filter))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: first entry: %v", ErrUnavailable, err)
	}
	return toEntry(p, m)
}

// partitions is the number of partitions (streams) of the queue.
func (q *queue) partitions() int { return len(q.streams) }

// at returns the entry at position pos, or nil when there is none (never
// stored, deleted, or lost with the stream's state).
func (q *queue) at(ctx context.Context, pos uint64) (*entry, error) {
	p := partOf(pos)
	if p >= len(q.streams) {
		return nil, fmt.Errorf("%w: read entry: no partition %d", ErrUnavailable, p)
	}
	if q.direct {
		return q.directGet(ctx, p, directRequest{Seq: seqOf(pos)})
	}
	m, err := q.streams[p].GetMsg(ctx, seqOf(pos))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read entry: %v", ErrUnavailable, err)
	}
	return toEntry(p, m)
}

// appendIf stores an entry on subject only if the newest entry matching
// channel still has position expect (0 = none): a compare-and-set over
// the whole channel. It returns errConflict when the channel changed. An
// entry appended to an empty channel carries hdrAlone (see fastpath.go).
func (q *queue) appendIf(ctx context.Context, subject, channel string, expect uint64, id string, ttl time.Duration) (uint64, error) {
	p, channel, err := q.pinned(channel)
	if err != nil {
		return 0, err
	}
	// A party's own context has no deadline when pipe.timeout is 0: one
	// lost acknowledgement must not hold it forever.
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	m := nats.NewMsg(subjects.PipeInPartition(subject, p, len(q.streams)))
	m.Data = []byte(id)
	if ttl == 0 && expect == 0 {
		m.Header.Set(hdrAlone, "1")
	}
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, channel)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(seqOf(expect), 10))
	if ttl > 0 {
		m.Header.Set(jetstream.MsgTTLHeader, ttl.String())
	}
	// A plain request whose acknowledgement is read without decoding it
	// (jsutil.PubAck); with no stream leader to answer, jetstream's
	// publish retries while one is elected.
	var seq uint64
	resp, err := q.nc.RequestMsgWithContext(ctx, m)
	switch {
	case err == nil:
		seq, err = jsutil.PubAck(resp.Data)
	case errors.Is(err, nats.ErrNoResponders):
		var ack *jetstream.PubAck
		if ack, err = q.js.PublishMsg(ctx, m); err == nil {
			seq = ack.Sequence
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, errConflict
	}
	if err != nil {
		return 0, fmt.Errorf("%w: append: %v", ErrUnavailable, err)
	}
	return pos(p, seq), nil
}

// remove deletes the entry at position seq; an entry already gone is not
// an error.
func (q *queue) remove(ctx context.Context, seq uint64) error {
	p := partOf(seq)
	if p >= len(q.streams) {
		return fmt.Errorf("%w: delete entry: no partition %d", ErrUnavailable, p)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	req := strconv.AppendUint([]byte(`{"seq":`), seqOf(seq), 10)
	req = append(req, `,"no_erase":true}`...)
	resp, err := q.nc.RequestWithContext(ctx, q.deletes[p], req)
	if err == nil {
		err = jsutil.Success(resp.Data)
	}
	// Gone already: not found, or an answer without success or error (as
	// jetstream's ErrMsgDeleteUnsuccessful was).
	var apiErr *jetstream.APIError
	if err == nil || errors.Is(err, jsutil.ErrUnsuccessful) || errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound ||
		apiErr.ErrorCode == jsutil.ErrCodeSequenceNotFound) {
		return nil
	}
	return fmt.Errorf("%w: delete entry: %v", ErrUnavailable, err)
}

// purge deletes every entry matching filter, in every partition it spans.
func (q *queue) purge(ctx context.Context, filter string) error {
	for p, f := range q.spanned(filter) {
		if err := q.streams[p].Purge(ctx, jetstream.WithPurgeSubject(f)); err != nil {
			return fmt.Errorf("%w: purge: %v", ErrUnavailable, err)
		}
	}
	return nil
}

// counts returns the number of entries per subject matching filter, over
// every partition it spans. Subjects are in their stored form, which
// subjects.ParsePipeEntry reads.
func (q *queue) counts(ctx context.Context, filter string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for p, f := range q.spanned(filter) {
		info, err := q.streams[p].Info(ctx, jetstream.WithSubjectFilter(f))
		if err != nil {
			return nil, fmt.Errorf("%w: stream info: %v", ErrUnavailable, err)
		}
		for subj, n := range info.State.Subjects {
			out[subj] += n
		}
	}
	return out, nil
}
