// Package gateway runs one Switchboard gateway. It opens its HTTP listener
// first (/healthz answers at once), then connects to NATS (or starts an
// embedded nats-server) and provisions the streams and buckets the
// protocols need, all at once, while /readyz names what is still being
// provisioned; then it serves every public route. It shuts down in a fixed
// order: not ready, stop accepting, end tracked streams and WebSockets,
// close services, drain NATS, stop the embedded server. A NATS connection
// that closes for good fails the gateway: Run returns an error, so the
// process exits non-zero and is restarted.
//
// The gateway keeps no state of its own beyond open connections: all
// protocol state lives in NATS, so any number of gateways can serve the
// same cluster behind a plain load balancer.
package gateway
