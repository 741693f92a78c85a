// Package middleman implements the middleman WebSocket protocol (SPEC §3)
// on NATS: pub/sub and request/response between services (trusted keys)
// and clients (untrusted keys), with every gateway of the cluster acting as
// one middleman server.
//
// The core types are transport-agnostic: a [Frame] is one message, a
// [Session] is one authenticated connection speaking frames through a
// small [Conn] interface, the [Hub] routes a gateway's sessions over NATS,
// and [Trust] keeps the cluster-wide EPUB/ESUB/EREQ enablements. http.go
// only translates the /mm WebSocket upgrade into a Session.
//
// NATS mapping (subjects in internal/subjects):
//
//   - PUB key: one core publish on sb.mm.pub.<key>. Each gateway holds ONE
//     subscription per key its sessions subscribed to (refcounted) and fans
//     out locally; super-key sessions share one sb.mm.pub.* subscription.
//   - REQ key: a publish on sb.mm.req.<key> with a per-request reply subject;
//     gateways with EREQ sessions for key subscribe in one queue group and
//     pick a local responder round-robin. NATS' no-responders status gives
//     "No responder for REQ key".
//   - RES, INT and MSG:<cid>: published to the owning gateway's control
//     subject sb.mm.gw.<gw>.…, which that gateway subscribes to once; cids
//     and Rids name their gateway, so no lookup is needed to route them.
//
// Limits and containment (SPEC §0):
//
//   - Keys are at most [MaxKeyLen] (256) bytes, counted as sent (UTF-8,
//     before any escaping), for every command (PUB, SUB, UNS, REQ, RES,
//     EPUB, ESUB, EREQ, INT and unknown ones) and for the handshake. A
//     longer key is refused before any trust lookup or NATS call with
//     `PUB ERROR` "Key too long CMD <first 32 bytes>…" (the connection
//     stays open; errors never echo more than 32 bytes of such a key); a
//     handshake key that long is closed with 1008 like any unknown key
//     (only its first 4 KiB are read). Configured keys longer than that
//     stop the hub from starting. So no key can build a subject nats-server
//     refuses, which would close the gateway's NATS connection.
//   - A Rid is "<gw>-<n>-<seq>-<secret>", the secret 128 random bits
//     (crypto/rand.Text). It routes by itself to the requester's gateway
//     (reply subject sb.mm.gw.<gw>.r.<n>.<seq>.<secret>), which delivers a
//     RES only if that request still waits under that secret. A RES whose
//     Rid names no waiting request (malformed, forged, answered or timed
//     out) gets "Unknown Rid RES key": at once when the requester is on the
//     same gateway, else from the requester's gateway (a Rid naming a
//     gateway that no longer exists is dropped silently).
//   - Only the server sets Rid (on REQ), Cid and Uid: a client's Rid is
//     dropped from PUB and replaced on REQ; Cid and Uid are overwritten.
//   - A CR not followed by LF in the command line or a header is refused
//     as a malformed frame (a reader that ends lines at a bare CR would see
//     a header nobody checked); in a body it is data.
//   - A text message that is not UTF-8 closes the connection with 1007,
//     the key message included.
//   - Every subject a gateway publishes to is built from ids it parsed
//     itself; a message from NATS with a malformed Rid, cid, control
//     subject, uid or kind is dropped and counted in
//     switchboard_middleman_nats_refused_total{reason="malformed"}, an
//     answer for no waiting request in {reason="unmatched"}.
package middleman
