package megaphone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/jsutil"
	"github.com/switchboard/switchboard/internal/subjects"
)

// errConflict is a compare-and-set that lost: the key's last revision is
// not the expected one.
var errConflict = errors.New("megaphone: revision conflict")

// record is a KV key read through the stream leader, so a write that was
// acknowledged anywhere in the cluster is seen (a direct get may be
// answered by a follower that has not applied it yet).
type record struct {
	rev  uint64
	data []byte
	live bool // false: a delete/purge/expiry marker
}

// kvKey is one key of one bucket, addressed at the stream level so that
// compare-and-set can carry a per-message TTL.
type kvKey struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	acks    *ackSlots
	bucket  string
	subject string
}

func newKVKey(b *Broker, bucket, key string) (kvKey, error) {
	subj, err := subjects.KVKeySubject(bucket, key)
	if err != nil {
		return kvKey{}, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	return kvKey{js: b.js, nc: b.nc, acks: b.acks, bucket: bucket, subject: subj}, nil
}

// put stores value if the key's last revision is expect (0 = no message
// on the key) with a per-key TTL, and returns the new revision.
func (k kvKey) put(ctx context.Context, value []byte, expect uint64, ttl time.Duration) (uint64, error) {
	h := nats.Header{jetstream.ExpectedLastSubjSeqHeader: {strconv.FormatUint(expect, 10)}}
	if ttl > 0 {
		h[jetstream.MsgTTLHeader] = []string{wholeSeconds(ttl).String()}
	}
	rev, err := k.publish(ctx, &nats.Msg{Subject: k.subject, Header: h, Data: value})
	if isWrongLastSeq(err) {
		return 0, fmt.Errorf("%w: %s", errConflict, k.subject)
	}
	if err != nil {
		return 0, fmt.Errorf("megaphone: put %s: %w", k.subject, err)
	}
	return rev, nil
}

// remove purges the key if its last revision is expect and returns the
// revision of the purge marker, which itself expires after markerTTL.
func (k kvKey) remove(ctx context.Context, expect uint64, markerTTL time.Duration) (uint64, error) {
	h := nats.Header{
		"KV-Operation":                      {"PURGE"},
		jetstream.MsgRollup:                 {jetstream.MsgRollupSubject},
		jetstream.ExpectedLastSubjSeqHeader: {strconv.FormatUint(expect, 10)},
		jetstream.MsgTTLHeader:              {wholeSeconds(markerTTL).String()},
	}
	rev, err := k.publish(ctx, &nats.Msg{Subject: k.subject, Header: h})
	if isWrongLastSeq(err) {
		return 0, fmt.Errorf("%w: %s", errConflict, k.subject)
	}
	if err != nil {
		return 0, fmt.Errorf("megaphone: remove %s: %w", k.subject, err)
	}
	return rev, nil
}

// publish stores m, a KV write whose headers carry its expected revision
// (and TTL), and returns its revision (the stream sequence). It publishes
// to the key's subject itself on a reused reply subscription (ackSlots)
// and reads the acknowledgement without decoding it (jsutil.PubAck):
// nats.go's KV and jetstream publishes decode every acknowledgement with
// json.Unmarshal. An error answer (a revision conflict among them) comes
// back as the same *jetstream.APIError, wrapped as the jetstream package
// wraps it. With no responders (no stream leader yet) the write goes the
// jetstream package's way, which retries while a leader is elected.
func (k kvKey) publish(ctx context.Context, m *nats.Msg) (uint64, error) {
	resp, err := k.acks.requestMsg(ctx, m)
	if errors.Is(err, nats.ErrNoResponders) {
		pa, err := k.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		if err != nil {
			return 0, err
		}
		return pa.Sequence, nil
	}
	if err != nil {
		return 0, err
	}
	return jsutil.PubAck(resp.Data)
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

type msgGetResponse struct {
	Message *struct {
		Seq  uint64 `json:"seq"`
		Hdrs []byte `json:"hdrs"`
		Data []byte `json:"data"`
	} `json:"message"`
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// last reads the key's last message from the stream leader. A key with
// no message is a record with rev 0 and live false.
func (k kvKey) last(ctx context.Context) (record, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": k.subject})
	msg, err := k.nc.RequestWithContext(ctx, subjects.JSMsgGet(subjects.KVStream(k.bucket)), req)
	if err != nil {
		return record{}, fmt.Errorf("megaphone: get %s: %w", k.subject, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return record{}, fmt.Errorf("megaphone: get %s: %w", k.subject, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
			return record{}, nil
		}
		return record{}, fmt.Errorf("megaphone: get %s: %s (%d)", k.subject, resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return record{}, fmt.Errorf("megaphone: get %s: empty response", k.subject)
	}
	r := record{rev: resp.Message.Seq, data: resp.Message.Data, live: true}
	if len(resp.Message.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Hdrs)
		if err == nil && isRemoval(h) {
			r.live = false
		}
	}
	return r, nil
}

// keyRevs are the revisions a gateway last wrote for one channel: its
// channel key (and the value written) and its reader claim (the claim it
// holds idle, or its release marker).
type keyRevs struct {
	ch     uint64 // 0: not known
	chData []byte
	claim  uint64 // 0: not known
	// held: claim is this gateway's live claim, kept after its poll
	// reached the deadline (see hold.go); else the release marker.
	held bool
	// cursor is the last event the poll that ended delivered (0 after
	// the create); resume: it delivered every event it was woken for,
	// so the next poll may start after cursor with no read if the
	// channel stayed quiet (see wakeups.quiet).
	cursor uint64
	resume bool
	at     time.Time
}

// revCache remembers keyRevs by channel id between a poll's end (or the
// channel's creation) and the next poll of the channel on this gateway,
// so that poll writes the claim and the channel key by compare-and-set on
// the remembered revisions at once, instead of reading both from the
// stream leader first: a re-poll opens in two JetStream round trips
// instead of five. A stale entry is harmless: its compare-and-set fails
// and the poll reads the key as before. An entry is taken by the poll
// that uses it (or by another gateway's hand-off request), so open polls
// hold none; every sweepEvery additions the entries past ttl are dropped,
// and past maxCached entries the cache starts over (a held claim dropped
// that way frees when its TTL ends). An entry older than ttl is not used
// warm: the channel's next poll then most likely ran on another gateway
// (behind a load balancer), which moved both keys on, and its
// compare-and-sets would only fail.
type revCache struct {
	ttl  time.Duration
	mu   sync.Mutex
	m    map[string]keyRevs
	adds int
}

func newRevCache(ttl time.Duration) *revCache {
	return &revCache{ttl: ttl, m: make(map[string]keyRevs)}
}

func (c *revCache) put(id string, r keyRevs) {
	r.at = time.Now()
	c.mu.Lock()
	// Entries past ttl are never used: they go (a channel polled once,
	// or since polled on another gateway, leaves one behind).
	putBounded(c.m, &c.adds, id, r, r.at, keyRevsAt, c.ttl)
	c.mu.Unlock()
}

func keyRevsAt(r keyRevs) time.Time { return r.at }

// take returns and forgets what is remembered for id (found), and
// whether it is within ttl (fresh).
func (c *revCache) take(id string) (r keyRevs, found, fresh bool) {
	c.mu.Lock()
	r, found = c.m[id]
	if found {
		delete(c.m, id)
	}
	c.mu.Unlock()
	return r, found, found && time.Since(r.at) < c.ttl
}

// takeHeld forgets the claim of id held idle at revision claim and
// reports whether there was one.
func (c *revCache) takeHeld(id string, claim uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[id]
	if !ok || !r.held || r.claim != claim {
		return false
	}
	delete(c.m, id)
	return true
}

// heldClaim is a reader claim held idle: its channel and revision.
type heldClaim struct {
	id  string
	rev uint64
}

// takeAllHeld forgets and returns every claim held idle.
func (c *revCache) takeAllHeld() []heldClaim {
	c.mu.Lock()
	defer c.mu.Unlock()
	var held []heldClaim
	for id, r := range c.m {
		if r.held {
			held = append(held, heldClaim{id: id, rev: r.claim})
			delete(c.m, id)
		}
	}
	return held
}

// wholeSeconds rounds a TTL up to whole seconds, the resolution of
// JetStream's per-message TTL (minimum 1s).
func wholeSeconds(d time.Duration) time.Duration {
	return max(time.Second, (d+time.Second-1)/time.Second*time.Second)
}

// isRemoval reports whether a KV message with header h is a delete, purge
// or server-placed expiry marker.
func isRemoval(h nats.Header) bool {
	if h == nil {
		return false
	}
	op := h.Get("KV-Operation")
	return op == "DEL" || op == "PURGE" || h.Get(jetstream.MarkerReasonHeader) != ""
}
