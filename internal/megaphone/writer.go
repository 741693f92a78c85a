package megaphone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/jsutil"
	"github.com/switchboard/switchboard/internal/subjects"
)

// roomRetry bounds the wait between two attempts of a write that found the
// buffer full, in case a room notification was missed.
var roomRetry = 250 * time.Millisecond

// stamp is the id and time shared by one message of a batch.
type stamp struct{ eid, ts string }

// newStamp draws an event id and takes the time, both in one string (one
// allocation instead of three).
func newStamp() stamp {
	var b [eidLen + len(time.RFC3339Nano)]byte
	buf := appendAlnum(b[:0], eidLen)
	buf = time.Now().UTC().AppendFormat(buf, time.RFC3339Nano)
	s := string(buf)
	return stamp{eid: s[:eidLen], ts: s[eidLen:]}
}

// eventEnvelope is the fixed part of a stored event's line.
const eventEnvelope = `{"sid":,"eid":"","ts":"","body":}`

// encodeEvent renders one NDJSON line (without '\n'), the stored and
// delivered form of a write: {"sid","eid","ts","body"}, exactly as
// json.Marshal renders such a struct, built without reflection. The body is
// compacted so a pretty-printed body never splits the line. The line is
// one allocation: a body without the bytes json.Marshal escapes in a
// RawMessage (<, >, &, U+2028, U+2029) is compacted straight into it.
func encodeEvent(sid string, body []byte, st stamp) ([]byte, error) {
	line := make([]byte, 0, len(eventEnvelope)+len(sid)+2+len(st.eid)+len(st.ts)+len(body))
	line = append(line, `{"sid":`...)
	line = appendJSONString(line, sid)
	line = append(line, `,"eid":`...)
	line = appendJSONString(line, st.eid)
	line = append(line, `,"ts":`...)
	line = appendJSONString(line, st.ts)
	line = append(line, `,"body":`...)
	out := bytes.NewBuffer(line)
	if !needsHTMLEscape(body) {
		if err := json.Compact(out, body); err != nil {
			return nil, badBody(err)
		}
	} else {
		var compact bytes.Buffer
		compact.Grow(len(body))
		if err := json.Compact(&compact, body); err != nil {
			return nil, badBody(err)
		}
		json.HTMLEscape(out, compact.Bytes()) // as json.Marshal does to a RawMessage
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

func badBody(err error) error {
	return fmt.Errorf("%w: body is not valid JSON: %v", ErrBadRequest, err)
}

// needsHTMLEscape reports whether json.HTMLEscape would change b: it
// holds <, >, & or the first byte of U+2028 or U+2029 in UTF-8 (0xE2,
// checked loosely: any 0xE2 takes the slower path).
func needsHTMLEscape(b []byte) bool {
	for _, c := range b {
		if c == '<' || c == '>' || c == '&' || c == 0xE2 {
			return true
		}
	}
	return false
}

// appendJSONString appends s as json.Marshal encodes a string: as it is
// when every byte is printable ASCII that needs no escape, else through
// json.Marshal (which never fails on a string).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Write stores one event on the channel of addr (either form). It returns
// once JetStream acknowledged the event; when the buffer is full it waits
// up to WriteWait for room, then fails with ErrTimeout.
func (b *Broker) Write(ctx context.Context, addr, streamID string, body []byte) error {
	if err := checkStreamID(streamID); err != nil {
		return err
	}
	a, err := b.codec.resolve(addr)
	if err != nil {
		return err
	}
	line, err := encodeEvent(streamID, body, newStamp())
	if err != nil {
		return err
	}
	if err := b.checkMaxEvent(line); err != nil {
		return err
	}
	if err := b.checkSize(line); err != nil {
		return err
	}
	subj, err := b.lookup(ctx, a, true)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			b.m.unroutable.Inc()
		}
		return err
	}
	return b.store(ctx, a, subj, line, time.Now().Add(b.cfg.WriteWait))
}

// MaxStreamIDLen bounds a stream id (bytes).
const MaxStreamIDLen = subjects.MaxNameLen

// checkStreamID refuses an empty stream id or one over MaxStreamIDLen.
func checkStreamID(sid string) error {
	switch {
	case sid == "":
		return fmt.Errorf("%w: empty stream id", ErrBadRequest)
	case len(sid) > MaxStreamIDLen:
		return fmt.Errorf("%w: stream id of %d bytes is longer than %d", ErrBadRequest, len(sid), MaxStreamIDLen)
	}
	return nil
}

// checkMaxEvent refuses an event whose NDJSON line (line plus the '\n' a
// reader receives) is longer than megaphone.max_event_bytes, when set.
func (b *Broker) checkMaxEvent(line []byte) error {
	limit := int64(b.cfg.MaxEventBytes)
	if n := int64(len(line)) + 1; limit > 0 && n > limit {
		return fmt.Errorf("%w: event of %d bytes exceeds megaphone.max_event_bytes of %s (NDJSON line: stored object and newline)",
			ErrTooLarge, n, b.cfg.MaxEventBytes)
	}
	return nil
}

// checkSize refuses a line that a NATS message cannot carry with room for
// headers. A line within the limit last read passes without asking nats.go
// (whose lock every publish takes); a refusal reads the limit again first,
// and a line the current server cannot carry after all (a reconnect to one
// with a lower max_payload) is refused by nats.go at publish time, which
// [Broker.publish] answers with ErrTooLarge.
func (b *Broker) checkSize(line []byte) error {
	if int64(len(line))+512 <= b.maxPayload.Load() {
		return nil
	}
	max := b.nc.MaxPayload()
	b.maxPayload.Store(max)
	if int64(len(line))+512 > max {
		return fmt.Errorf("%w: stored event of %d bytes (body, stream id and envelope) exceeds the %d bytes a NATS message can carry (max_payload %d less 512 for headers)",
			ErrTooLarge, len(line), max-512, max)
	}
	return nil
}

// errFull is a publish rejected because the channel's buffer is full.
var errFull = errors.New("megaphone: buffer full")

// publishTimeout bounds one JetStream publish (jetstream's own default).
const publishTimeout = 5 * time.Second

// publish stores line. The stream republishes it, with its sequence, on
// the channel's wake-up subject, which wakes the reader (see [carried]).
// The publish is a plain request on a reused reply subscription (see
// ackSlots) whose acknowledgement is recognised without decoding it
// (jsutil.PubAck); anything else (an error answer,
// no stream leader to answer) goes the jetstream package's way.
func (b *Broker) publish(ctx context.Context, subj string, line []byte) error {
	resp, err := b.acks.request(subj, line, publishTimeout)
	switch {
	case err == nil:
		_, err = jsutil.PubAck(resp.Data)
	case errors.Is(err, nats.ErrNoResponders):
		// Nothing was stored: jetstream's publish retries while a stream
		// leader is elected.
		_, err = b.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: line})
	}
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum messages per subject") {
			return errFull
		}
		if errors.Is(err, nats.ErrMaxPayload) {
			b.maxPayload.Store(b.nc.MaxPayload())
			return fmt.Errorf("%w: stored event of %d bytes exceeds what the NATS server takes: %v", ErrTooLarge, len(line), err)
		}
		return noLeader(fmt.Errorf("megaphone: store event: %w", err))
	}
	b.m.received.Inc()
	return nil
}

// store publishes line on subj, a's event subject, waiting for room
// until deadline.
func (b *Broker) store(ctx context.Context, a address, subj string, line []byte, deadline time.Time) error {
	err := b.publish(ctx, subj, line)
	if !errors.Is(err, errFull) {
		return err
	}
	room, err := subjects.MegaphoneRoom(a.id)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	sub, err := b.nc.SubscribeSync(room)
	if err != nil {
		return fmt.Errorf("megaphone: wait for room: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	wake, err := subjects.MegaphoneWake(a.id)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	for {
		// An empty wake-up asks the reader to remove what it delivered
		// now rather than lazily; it answers on the room subject.
		_ = b.nc.Publish(wake, nil)
		if err := b.publish(ctx, subj, line); !errors.Is(err, errFull) {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w: %s", ErrTimeout, ConsumerAddress(a.agent, a.id))
		}
		wctx, cancel := context.WithTimeout(ctx, min(left, roomRetry))
		_, werr := sub.NextMsgWithContext(wctx)
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("megaphone: wait for room: %w", ctx.Err())
		}
		if werr != nil && !errors.Is(werr, context.DeadlineExceeded) {
			return fmt.Errorf("megaphone: wait for room: %w", werr)
		}
		if _, err := b.lookup(ctx, a, false); err != nil { // disposed while waiting
			return err
		}
	}
}
