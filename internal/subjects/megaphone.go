package subjects

import (
	"fmt"
	"strings"
)

// Megaphone names. Channel events live in one stream, one subject per
// channel; channel metadata, reader claims, the cluster key and the
// disposal guard live in KV buckets.
const (
	// MegaphoneStream holds every channel's buffered events.
	MegaphoneStream = "SB_MEGAPHONE"
	// MegaphoneChannelsBucket holds one key per live channel (per-key TTL).
	MegaphoneChannelsBucket = "SB_MP_CHANNELS"
	// MegaphoneReadersBucket holds one claim per channel with an open reader.
	MegaphoneReadersBucket = "SB_MP_READERS"
	// MegaphoneKeysBucket holds the cluster-wide producer-token key.
	MegaphoneKeysBucket = "SB_MP_KEYS"
	// MegaphoneDisposedBucket remembers disposed channels so that exactly
	// one gateway purges them and fires the webhook.
	MegaphoneDisposedBucket = "SB_MP_DISPOSED"
	// MegaphoneTokenKey is the key of the AEAD key in MegaphoneKeysBucket.
	MegaphoneTokenKey = "producer-aead-v1"
	// MegaphoneReaper is the durable consumer, shared by all gateways, that
	// sees channel keys expire.
	MegaphoneReaper = "sb-mp-reaper"
)

const (
	mpToken     = "mp"
	mpEvents    = "ev"
	mpWake      = "wake"
	mpRoom      = "room"
	mpGone      = "gone"
	mpHold      = "hold"
	kvPrefix    = "$KV"
	kvStreamPfx = "KV_"
)

// megaphoneSubject builds sb.mp.<kind>.<encoded channel>.
func megaphoneSubject(kind, channel string) (string, error) {
	tok, err := Encode(channel)
	if err != nil {
		return "", err
	}
	return join(Prefix, mpToken, kind, tok), nil
}

// MegaphoneEvents is the stream subject of one channel's buffered events.
func MegaphoneEvents(channel string) (string, error) { return megaphoneSubject(mpEvents, channel) }

// MegaphoneEventsAll matches every channel's event subject.
func MegaphoneEventsAll() string { return join(Prefix, mpToken, mpEvents, "*") }

// MegaphoneWake is the core subject a writer publishes the stored
// sequence on, after JetStream acknowledged the event; readers subscribe.
func MegaphoneWake(channel string) (string, error) { return megaphoneSubject(mpWake, channel) }

// MegaphoneWakeAll matches every channel's wake-up subject.
func MegaphoneWakeAll() string { return join(Prefix, mpToken, mpWake, "*") }

// MegaphoneRoom is the core subject a reader publishes on after it removed
// events, so writers waiting for room retry.
func MegaphoneRoom(channel string) (string, error) { return megaphoneSubject(mpRoom, channel) }

// MegaphoneGone is the core subject a disposed channel's id is announced
// on, so every gateway ends its polls and drops cached state.
func MegaphoneGone() string { return join(Prefix, mpToken, mpGone) }

// MegaphoneHold is the core subject a gateway answers on for the reader
// claims it holds between a channel's polls: a poll elsewhere asks it to
// hand one over. holder is the id the gateway writes as a claim's value;
// it is read back from the claims bucket, so it is encoded like any name.
func MegaphoneHold(holder string) (string, error) { return megaphoneSubject(mpHold, holder) }

// ChannelFromMegaphoneSubject returns the channel of an event (of any
// partition), wake or room subject.
func ChannelFromMegaphoneSubject(subject string) (string, error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != Prefix || parts[1] != mpToken ||
		(!isPartToken(parts[2], mpEvents) && parts[2] != mpWake && parts[2] != mpRoom) {
		return "", fmt.Errorf("%w: not a megaphone channel subject: %q", ErrBadToken, subject)
	}
	return Decode(parts[3])
}

// KVStream is the name of the stream backing a KV bucket.
func KVStream(bucket string) string { return kvStreamPfx + bucket }

// KVKeySubject is the subject a KV bucket stores key under. Publishing to
// it directly lets a caller combine a revision check with a per-message
// TTL, which the KV API does not offer for updates.
func KVKeySubject(bucket, key string) (string, error) {
	tok, err := Encode(key)
	if err != nil {
		return "", err
	}
	return join(kvPrefix, bucket, tok), nil
}

// KVAllKeys matches every key subject of bucket.
func KVAllKeys(bucket string) string { return join(kvPrefix, bucket, ">") }

// KeyFromKVSubject returns the key of a KV key subject of bucket.
func KeyFromKVSubject(bucket, subject string) (string, error) {
	pfx := kvPrefix + "." + bucket + "."
	if !strings.HasPrefix(subject, pfx) || strings.Contains(subject[len(pfx):], ".") {
		return "", fmt.Errorf("%w: not a key of bucket %s: %q", ErrBadToken, bucket, subject)
	}
	return Decode(subject[len(pfx):])
}

// MegaphoneKVKey is the KV key of a channel id. Ids are already safe
// tokens; the encoding keeps any other string from aliasing one.
func MegaphoneKVKey(channel string) (string, error) { return Encode(channel) }

// MegaphoneDirectGet is the JetStream direct-get API subject of
// [MegaphoneStream]: any replica answers, and a batch request returns
// several events in one round trip.
func MegaphoneDirectGet() string { return join("$JS", "API", "DIRECT", "GET", MegaphoneStream) }

// ReplyAll is the filter of every reply subject under inbox (a NATS inbox
// such as nats.NewInbox returns): "<inbox>.*".
func ReplyAll(inbox string) string { return join(inbox, "*") }

// Reply is reply subject n (a valid token) under inbox: "<inbox>.<n>".
func Reply(inbox, n string) string { return join(inbox, n) }
