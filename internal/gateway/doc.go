// Package gateway runs one Switchboard gateway: it connects to NATS (or
// starts an embedded nats-server), provisions the streams and buckets the
// protocols need, serves every public route on one HTTP listener, and shuts
// down in a fixed order: not ready, stop accepting, end tracked streams and
// WebSockets, close services, drain NATS, stop the embedded server.
//
// The gateway keeps no state of its own beyond open connections: all
// protocol state lives in NATS, so any number of gateways can serve the
// same cluster behind a plain load balancer.
package gateway
