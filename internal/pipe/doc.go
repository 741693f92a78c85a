// Package pipe implements rendezvous pipes (httpipe): a producer's POST
// and a consumer's GET on /channels/{ns}/{name} wait for each other, and
// the producer's body streams to the consumer. Parties are paired in
// arrival order across the whole cluster.
//
// # Matching
//
// Waiting parties are entries of one memory-backed JetStream stream,
// subject sb.pipe.q.<ns>.<name>.<role>.<gateway>, data = the party's id
// on its gateway. Stream order is arrival order. Every append carries a
// compare-and-set on the newest entry of the whole channel
// (Nats-Expected-Last-Subject-Sequence with a channel-wide subject), so
// two arrivals that saw the same channel state cannot both append. This
// keeps one invariant: producers and consumers never wait on the same
// channel at the same time. Hence the channel's newest entry says what
// an arriving party must do:
//
//   - nothing, or its own role: append itself behind it (CAS) and wait;
//   - the opposite role: append a matcher marker (role m, CAS, with a
//     per-message TTL in case its gateway dies) — this is the channel's
//     lock, so only one pair is matched at a time per channel — then
//     claim the head of the opposite queue;
//   - a marker: another party is matching; poll with back-off.
//
// A claim asks the head's gateway (request to
// sb.pipe.claim.<gateway>.<id>, or a function call when it is this
// gateway) whether that party is still there. Its gateway answers yes
// only if the HTTP request is alive and not claimed yet; "no", no
// responders or a timeout drop that entry and the next head is tried. On
// yes the head's entry is deleted before either party is answered (so
// listings never show a served party) and the marker is released in the
// background; the pair's transfer then runs on its own, so a long
// transfer never holds up the next match. Arrivals that find a marker of
// their own gateway are woken by its release; for a marker elsewhere they
// poll with back-off (0.2 to 5 ms). With no live partner left the
// matcher appends itself (CAS against its own marker) and releases the
// marker. A party that disconnects, times out (pipe.timeout) or is
// deleted marks itself ended (refusing later claims) and deletes its own
// entry. DELETE purges the entries, then announces the deletion on
// sb.pipe.gone.<ns>[.<name>]; every gateway ends its waiters there with
// 410. Listings read the stream's per-subject counts, so they are
// cluster-wide. Reads of the queue are direct gets when the stream has
// one replica and leader reads through the API otherwise (a direct get
// may be served by a lagging follower). A sweeper removes the entries of gateways that vanished
// without cleaning up (no responders to sb.pipe.alive.<gateway> twice), and ends with 503 the
// local parties whose entries the queue lost (a restart of every node of its memory stream).
//
// The common hand-off takes 2 JetStream operations when both parties
// reach one gateway and 4 across gateways (fastpath.go): an entry
// appended to an empty channel is marked alone and is the channel's head
// while it exists, so its partner claims it without the marker and
// deletes it by position while the body flows; arrivals act on the gateway's
// guess of the newest entry (its own last waiter there, else "empty")
// instead of reading it, every step being a compare-and-set against the
// guess; and arrivals of one channel on one gateway run one at a time.
//
// When the served entry is this gateway's own (both parties here), no
// response waits for its deletion, nor for that of a party that left
// without a partner: the gateway tracks those deletions until they are
// acknowledged, and a listing that reads entries asks their gateways to
// settle first (the liveness subject, answered once the deletions started
// before the question are done) and then reads again (settle.go). So a
// listing that starts after both parties were answered never shows them.
//
// # Transfer
//
// [Hub.Send] and [Hub.Receive] run a producer and a consumer for any
// transport (an [Input] body in, an [Output] response out): the wait, the
// copy loop, the prefetch and the outcome metrics. http.go only turns a
// request into one of these calls and the outcome into a status.
//
// When both parties are held by the same gateway the body is handed over
// in-process through an io.Pipe. Otherwise it streams over core NATS with
// [natsio]: the consumer's side owns a Receiver and gives its subject to
// the producer's side in the claim (or the claim's answer); the producer's
// side opens a Sender and copies the request body; Sender.Close returns
// once the consumer read everything, and only then does the producer get
// 200. Memory per transfer is bounded by natsio's window.
//
// # Headers
//
// A producer's [Meta] travels with the pairing: in the local claim or
// its answer, and between gateways in the claim (a producer claims) or
// the claim's answer (a producer answers) as Sb-Pipe-Content-Type,
// Sb-Pipe-Length, Sb-Pipe-Disposition and Sb-Pipe-Piping (one per
// X-Piping value). Gateways without the newer headers send only the type;
// a missing length means unknown. [Hub.Send] refuses values longer than
// [MaxHeaderValue], more than [MaxPipingValues] X-Piping values, and
// control characters (CR, LF) with [ErrBadHeader]; values from another
// gateway that break the bounds are dropped. A known length is checked on
// both sides ([ErrLength]), and the last byte is held back until the
// body's end is seen, so a consumer told Content-Length never gets a
// complete-looking response from a body that turns out longer or shorter.
//
// # Beyond one to one
//
// A producer with ?n=N (N > 1) forms a group of N consumers with the same
// n in queue order and streams its body to all of them (fanout.go); a
// producer with ?pubsub=true never waits and reaches every consumer
// waiting at that moment, including pub/sub consumers that never enter
// the queue (pubsub.go); ?progress=1 gives the producer piping-server's
// feedback lines (progress.go).
package pipe
