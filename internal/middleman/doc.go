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
package middleman
