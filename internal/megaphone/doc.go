// Package megaphone implements buffered Megaphone channels (a drop-in for
// megaphone-broker 0.10) on JetStream, with no state in the gateway.
//
// The transport-agnostic core is [Broker]: it creates channels, stores
// events, runs read polls ([Poll]) and disposes expired channels. The
// net/http handlers in http.go only translate HTTP into calls on it;
// [Service] hands them to the gateway as routes. config.go holds the
// megaphone.* keys and their defaults.
//
// NATS layout (names from internal/subjects):
//
//   - stream SB_MEGAPHONE, subject sb.mp.ev.<channel> per channel,
//     MaxMsgsPerSubject = buffer size, DiscardNew per subject: a full
//     buffer rejects the publish and the writer waits for room; the
//     stream republishes every stored event on its channel's wake-up
//     subject, so a reader that keeps up never reads the stream;
//   - KV SB_MP_CHANNELS: one key per live channel with a per-key TTL that
//     a read refreshes; its expiry marker is the channel's death;
//   - KV SB_MP_READERS: one claim per channel with an open reader,
//     created with Create and a TTL so a vanished reader frees it;
//   - KV SB_MP_KEYS: the cluster-wide AEAD key of producer tokens;
//   - KV SB_MP_DISPOSED: a Create-guard so one gateway disposes a channel;
//   - core subjects sb.mp.wake.<channel> (stream → reader: the stored
//     event; writer → reader, empty: the buffer is full),
//     sb.mp.room.<channel> (reader → waiting writers), sb.mp.gone.
//
// With jetstream.partitions = K > 1 the event stream and the channels and
// readers buckets are each K streams (SB_MEGAPHONE_P<p>, sb.mp.ev<p>.<channel>,
// SB_MP_CHANNELS_P<p>, SB_MP_READERS_P<p>), a reaper consumer on each
// channels partition; a channel lives in partition subjects.MegaphonePartition
// of its id, so everything about one channel is in one stream per store.
package megaphone
