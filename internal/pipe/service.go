package pipe

import (
	"context"
	"time"

	"github.com/switchboard/switchboard/internal/protocol"
)

// Service serves rendezvous pipes (httpipe) on the gateway: the net/http
// handlers of http.go in front of a [Hub].
type Service struct {
	hub         *Hub
	streams     *protocol.Tracker
	bodyTimeout time.Duration
}

var _ interface {
	Provision(context.Context) error
	Routes() []protocol.Route
	Close() error
} = (*Service)(nil)

// New returns the pipe service. Its metrics are registered on
// deps.Registry; nothing touches NATS before Provision. The handlers
// track their requests on deps.Streams, which must be set.
func New(cfg Config, deps protocol.Deps) *Service {
	return &Service{hub: NewHub(cfg, deps), streams: deps.Streams, bodyTimeout: deps.HTTP.BodyTimeout}
}

// Provision creates the queue stream and subscribes to claims.
func (s *Service) Provision(ctx context.Context) error { return s.hub.Start(ctx) }

// Close stops the hub's background work.
func (s *Service) Close() error { return s.hub.Close() }
