package pipe

import (
	"context"
	"log/slog"

	"github.com/switchboard/switchboard/internal/service"
)

// Service serves rendezvous pipes (httpipe) on the gateway: the echo
// handlers of http.go in front of a [Hub].
type Service struct {
	deps service.Deps
	hub  *Hub
	log  *slog.Logger
}

var _ service.Service = (*Service)(nil)

// New returns the pipe service. Its metrics are registered on
// deps.Registry; nothing touches NATS before Provision.
func New(deps service.Deps) *Service {
	log := deps.Logger.With("component", "pipe")
	var stopping <-chan struct{}
	if deps.Streams != nil {
		stopping = deps.Streams.Stopping()
	}
	hub := NewHub(deps.NC, deps.JS, Options{
		Timeout:  deps.Config.Pipe.Timeout,
		Replicas: deps.Config.JetStream.Replicas,
		Stopping: stopping,
	}, log, deps.Registry)
	return &Service{deps: deps, hub: hub, log: log}
}

// Provision creates the queue stream and subscribes to claims.
func (s *Service) Provision(ctx context.Context) error { return s.hub.Start(ctx) }

// Close stops the hub's background work.
func (s *Service) Close() error { return s.hub.Close() }
