// Package protocol is what a protocol (Megaphone, pipes, middleman, the
// relay) receives from the gateway that hosts it: its NATS connection and
// JetStream, the replica count, a logger, a metrics registry, the tracker
// of long-lived requests and the HTTP limits of the JSON APIs. A protocol
// hands back plain net/http routes. Nothing here knows echo or the
// gateway's configuration, so a protocol can be hosted, and tested, by
// anything that serves net/http.
package protocol

import (
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Deps are the dependencies a gateway hands every protocol.
type Deps struct {
	// NC is the gateway's NATS connection.
	NC *nats.Conn
	// JS is JetStream on NC.
	JS jetstream.JetStream
	// Replicas is the replica count of the streams and buckets a protocol
	// creates (jetstream.replicas).
	Replicas int
	// Partitions is how many streams (and buckets) a partitioned store
	// is split into (jetstream.partitions); 0 means 1. The mapping of a
	// channel to its partition is in internal/subjects.
	Partitions int
	// Logger is scoped by the protocol with .With("component", name).
	Logger *slog.Logger
	// Registry receives the protocol's metrics.
	Registry prometheus.Registerer
	// Streams tracks long-lived requests so shutdown can end them.
	Streams *Tracker
	// SoleGateway says NATS is the gateway's embedded server, which no
	// other gateway uses: a protocol may then take one subscription to a
	// whole subject space instead of one per resource, since no other
	// gateway's traffic flows on it.
	SoleGateway bool
	// HTTP are the limits of request bodies the protocol reads whole.
	HTTP HTTP
	// ServeAgain hands a connection a handler took over (http.Hijacker)
	// back to the HTTP server once its response ended at a request
	// boundary: the server reads the client's next request on it, as on
	// a connection just accepted (keep-alive), or closes it if it is
	// shutting down. nil: not offered; such a connection is closed.
	ServeAgain func(net.Conn)
}

// HTTP are the gateway-wide limits of the JSON APIs (http.* keys).
type HTTP struct {
	// BodyLimit caps a request body read whole, in bytes.
	BodyLimit int64
	// BodyTimeout bounds the time to send such a body; 0 = none.
	BodyTimeout time.Duration
	// TrustedProxies are the IPs and CIDR prefixes whose forwarding headers
	// are kept (relay).
	TrustedProxies []string
	// CORSOrigins is the CORS allow-list of the Megaphone routes, applied
	// by the gateway's router.
	CORSOrigins []string
}

// Route is one route a protocol serves. Path uses the router's syntax:
// ":name" is one path segment, a trailing "*" the rest of the path; both
// reach the handler as r.PathValue(name) (r.PathValue("*") for the rest)
// as the router cut them from the path: decode them with httpx.PathParam,
// which gives every parameter exactly one percent-decoding.
type Route struct {
	Method  string // an HTTP method, or "" for every method (extension methods included)
	Path    string
	Handler http.Handler
	// CORS puts the route behind the gateway's CORS handling
	// (http.cors_origins).
	CORS bool
}
